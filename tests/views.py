"""Measuring views byte by byte: an image's current view and each internal snapshot's view."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backchain.core.model import Affected, CommitPlan
from tests.images import run

CURRENT = ""


def snapshot_names(image: Path) -> list[str]:
    """The image's internal snapshots, as qemu-img lists them."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(image)]))
    return [str(s["name"]) for s in info.get("snapshots", [])]


def bitmap_names(image: Path) -> list[str]:
    """The image's persistent dirty bitmaps, as qemu-img lists them."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(image)]))
    return [
        str(b["name"]) for b in info.get("format-specific", {}).get("data", {}).get("bitmaps", [])
    ]


def read_view(image: Path, scratch: Path, snapshot: str = CURRENT) -> np.ndarray:
    """Every byte a guest reads from the image (or from one internal snapshot of it)."""
    dest = scratch / f"{image.name}.{snapshot or 'current'}.{id(scratch)}.raw"
    argv = ["qemu-img", "convert", "-U", "-O", "raw"]
    if snapshot:
        argv += ["-l", f"snapshot.name={snapshot}"]
    run([*argv, str(image), str(dest)])
    data = np.fromfile(dest, dtype=np.uint8)
    dest.unlink()
    return data


def read_views(image: Path, scratch: Path) -> dict[str, np.ndarray]:
    """The current view and every internal snapshot's view."""
    names = [CURRENT, *snapshot_names(image)]
    return {name: read_view(image, scratch, name) for name in names}


def changed_bytes(before: np.ndarray, after: np.ndarray) -> int:
    """Bytes that differ; a view that grew counts its new bytes that are not zero."""
    size = min(before.size, after.size)
    extra = int(np.count_nonzero(after[size:])) + int(np.count_nonzero(before[size:]))
    return int(np.count_nonzero(before[:size] != after[:size])) + extra


def measure(before: dict[str, np.ndarray], image: Path, scratch: Path) -> dict[str, int]:
    """How many bytes of each view changed since ``before``."""
    return {
        name: changed_bytes(old, read_view(image, scratch, name)) for name, old in before.items()
    }


def assert_matches(predicted: Affected, measured: dict[str, int]) -> None:
    """The prediction equals the measurement, or bounds it from below where it says so."""

    def check(count: int | None, exact: bool, real: int, what: str) -> None:
        assert count is not None, what
        if exact:
            assert count == real, f"{what}: predicted {count}, measured {real}"
        else:
            assert count <= real, f"{what}: {count} > {real}"

    check(predicted.bytes, predicted.exact, measured[CURRENT], predicted.image)
    names = {s.name: s for s in predicted.snapshots}
    assert set(names) == set(measured) - {CURRENT}, (predicted.image, names, measured)
    for name, snap in names.items():
        check(snap.bytes, snap.exact, measured[name], f"{predicted.image}@{name}")


def predictions(plan: CommitPlan) -> dict[str, Affected]:
    """Every image the plan gives a figure for, by path."""
    return {a.image: a for a in (*plan.invalid, *plan.at_risk, *plan.view_changes)}


def commit_and_measure(
    plan: CommitPlan,
    images: list[Path],
    scratch: Path,
    connection: object | None = None,
    sink: object | None = None,
    settle: Callable[[], None] | None = None,
) -> dict[str, dict[str, int]]:
    """Run the plan for real; assert every view of every image changed as predicted.

    An image the plan gives no figure for must not change at all (base and deleted files
    aside), so an image left out of the preview is caught as well as a wrong figure.
    """
    from backchain.engines.progress import CancelToken, RecordingSink
    from backchain.engines.runner import run_plan

    watched = [p for p in images if str(p) != plan.base and str(p) not in plan.deleted]
    before = {p: read_views(p, scratch) for p in watched}
    run_plan(plan, sink or RecordingSink(), CancelToken(), connection)  # type: ignore[arg-type]
    if settle is not None:
        settle()  # a running QEMU keeps qcow2 metadata in memory until it flushes or quits
    figures = predictions(plan)
    found: dict[str, dict[str, int]] = {}
    for path, views in before.items():
        measured = measure(views, path, scratch)
        found[path.name] = measured
        if str(path) in figures:
            assert_matches(figures[str(path)], measured)
        else:
            assert not any(measured.values()), (
                f"{path.name} changed but is not in the plan: {measured}"
            )
    return found
