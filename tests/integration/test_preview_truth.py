"""The preview never under-counts: predict, commit for real, read every view byte by byte.

Each test builds real images with qemu-img and qemu-io, plans, runs the plan, and compares
every image's view and every internal snapshot's view before and after (tests/views.py).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from backchain.core.model import CommitRequest, LostKind
from backchain.engines.files.scan import open_graph
from backchain.engines.registry import make_plan
from tests.images import MiB, backchain, create, run, write, write_zeroes
from tests.views import bitmap_names, commit_and_measure, read_view, snapshot_names

SIZE = "8M"


def plan_for(active: Path, **options: object) -> object:
    graph = open_graph(str(active))
    return make_plan(graph, CommitRequest(image=str(active), **options))  # type: ignore[arg-type]


def strip_backing_format(image: Path) -> None:
    """Turn the backing-format extension into an unknown one, as old tools left images."""
    blob = bytearray(image.read_bytes()[:4096])
    at = blob.find(struct.pack(">I", 0xE2792ACA))
    assert at > 0
    with open(image, "r+b") as handle:
        handle.seek(at)
        handle.write(struct.pack(">I", 0x6B6B6B6B))
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(image)]))
    assert "backing-filename-format" not in info


def small_chain(directory: Path, size: str = SIZE) -> tuple[Path, Path]:
    base = create(directory / "base.qcow2", size)
    write(base, 0x11, 0, 8 * MiB)
    active = create(directory / "active.qcow2", backing="base.qcow2", cwd=directory)
    write(active, 0x22, 1 * MiB, 3 * MiB)
    return base, active


def test_siblings_without_backing_format_or_with_json_backing_are_counted(tmp_path: Path) -> None:
    base, active = small_chain(tmp_path)
    plain = create(tmp_path / "noformat.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(plain, 0x33, 2 * MiB, 1 * MiB)
    strip_backing_format(plain)
    spec = json.dumps({"driver": "qcow2", "file": {"driver": "file", "filename": str(base)}})
    as_json = create(tmp_path / "json.qcow2", backing=f"json:{spec}", cwd=tmp_path)
    write_zeroes(as_json, 3 * MiB, MiB)
    plan = plan_for(active)
    figures = {os.path.basename(a.image): (a.bytes, a.exact) for a in plan.at_risk}
    assert figures == {"noformat.qcow2": (2 * MiB, True), "json.qcow2": (2 * MiB, True)}
    commit_and_measure(plan, [active, plain, as_json], tmp_path)


def test_a_sibling_whose_allocation_cannot_be_read_is_listed_whole_and_not_exact(
    tmp_path: Path,
) -> None:
    _, active = small_chain(tmp_path)
    broken = create(tmp_path / "broken.qcow2", backing="base.qcow2", cwd=tmp_path)
    with open(broken, "r+b") as handle:  # an unaligned L1 table offset: qemu refuses it
        handle.seek(40)
        handle.write(struct.pack(">Q", (1 << 20) + 512))
    plan = plan_for(active)
    assert [(os.path.basename(a.image), a.bytes, a.exact) for a in plan.at_risk] == [
        ("broken.qcow2", 8 * MiB, False)
    ]


def test_internal_snapshots_of_a_sibling_are_views_of_their_own(tmp_path: Path) -> None:
    _, active = small_chain(tmp_path)
    sibling = create(tmp_path / "sibling.qcow2", backing="base.qcow2", cwd=tmp_path)
    run(["qemu-img", "snapshot", "-c", "empty", str(sibling)])
    write(sibling, 0x44, 0, 2 * MiB)
    run(["qemu-img", "snapshot", "-c", "half", str(sibling)])
    write(sibling, 0x45, 2 * MiB, 2 * MiB)
    plan = plan_for(active)
    (item,) = plan.at_risk
    # changed = [1,4) MiB: the current view hides all of it, "half" hides [1,2), "empty" none.
    assert (item.bytes, item.exact) == (0, True)
    assert [(s.name, s.bytes, s.exact) for s in item.snapshots] == [
        ("empty", 3 * MiB, True),
        ("half", 2 * MiB, True),
    ]
    measured = commit_and_measure(plan, [active, sibling], tmp_path)
    assert measured["sibling.qcow2"] == {"": 0, "empty": 3 * MiB, "half": 2 * MiB}


def test_delete_names_the_internal_snapshots_and_bitmaps_it_destroys(tmp_path: Path) -> None:
    create(tmp_path / "base.qcow2", SIZE)
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(mid, 0x21, 0, MiB)
    run(["qemu-img", "snapshot", "-c", "before-upgrade", str(mid)])
    run(["qemu-img", "bitmap", "--add", str(mid), "backup-0"])
    active = create(tmp_path / "active.qcow2", backing="mid.qcow2", cwd=tmp_path)
    plan = plan_for(active, top=str(mid), delete=True)
    lost = [(os.path.basename(x.image), x.kind, x.name) for x in plan.lost]
    assert lost == [("mid.qcow2", LostKind.INTERNAL_SNAPSHOT, "before-upgrade"),
                    ("mid.qcow2", LostKind.BITMAP, "backup-0")]  # fmt: skip
    document = json.loads(backchain("plan", "--json", str(active), "--top", str(mid),
                                    "--delete").stdout)  # fmt: skip
    assert {"image": str(mid), "kind": "bitmap", "name": "backup-0"} in document["lost"]
    words = backchain("plan", str(active), "--top", str(mid), "--delete").stdout
    assert "'before-upgrade' is lost" in words and "'backup-0' is lost" in words
    assert snapshot_names(mid) == ["before-upgrade"] and bitmap_names(mid) == ["backup-0"]
    commit_and_measure(plan, [active], tmp_path)
    assert not mid.exists()


def test_a_short_middle_layer_changes_the_view_of_the_overlay_re_pointed_to_base(
    tmp_path: Path,
) -> None:
    base = create(tmp_path / "base.qcow2", "2M")
    write(base, 0x11, 0, 2 * MiB)
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    run(["qemu-img", "resize", "-q", "--shrink", str(mid), "1M"])
    write(mid, 0x22, 0, MiB // 2)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    run(["qemu-img", "resize", "-q", str(top), "2M"])
    before = read_view(top, tmp_path)
    assert not before[MiB:].any()  # the short middle layer hides base there
    plan = plan_for(top, top=str(mid))
    assert [(os.path.basename(v.image), v.bytes, v.exact) for v in plan.view_changes] == [
        ("top.qcow2", MiB, True)
    ]
    assert plan.base_grows_to is None
    assert "its view changes by 1.0 MiB" in backchain("plan", str(top), "--top", str(mid)).stdout
    commit_and_measure(plan, [top], tmp_path)
    assert read_view(top, tmp_path)[MiB:].tolist() == [0x11] * MiB


def test_base_grows_to_top_size_and_siblings_see_the_new_data(tmp_path: Path) -> None:
    base = create(tmp_path / "base.qcow2", "4M")
    write(base, 0x11, 0, 4 * MiB)
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    run(["qemu-img", "resize", "-q", str(top), "8M"])
    write(top, 0x22, 3 * MiB, 4 * MiB)
    wide = create(tmp_path / "wide.qcow2", backing="base.qcow2", cwd=tmp_path)
    run(["qemu-img", "resize", "-q", str(wide), "8M"])
    narrow = create(tmp_path / "narrow.qcow2", backing="base.qcow2", cwd=tmp_path)
    plan = plan_for(top)
    assert plan.base_grows_to == 8 * MiB
    figures = {os.path.basename(a.image): a.bytes for a in plan.at_risk}
    assert figures == {"wide.qcow2": 4 * MiB, "narrow.qcow2": MiB}
    commit_and_measure(plan, [top, wide, narrow], tmp_path)
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(base)]))
    assert info["virtual-size"] == 8 * MiB


def test_scan_adds_to_the_chain_directories_and_no_default_scan_opts_out(tmp_path: Path) -> None:
    pool, other = tmp_path / "pool", tmp_path / "other"
    pool.mkdir()
    other.mkdir()
    base, active = small_chain(pool)
    near = create(pool / "near.qcow2", backing="base.qcow2", cwd=pool)
    far = create(other / "far.qcow2", backing=str(base))
    write(far, 0x66, 0, 2 * MiB)

    def planned(*options: str) -> dict[str, object]:
        result = backchain("plan", "--json", str(active), *options)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    both = planned("--scan", str(other))
    assert both["scanned"] == [str(other), str(pool)]
    assert {a["image"]: a["bytes"] for a in both["at_risk"]} == {str(near): 3 * MiB,
                                                                 str(far): 2 * MiB}  # fmt: skip
    only = planned("--scan", str(other), "--no-default-scan")
    assert only["scanned"] == [str(other)]
    assert [a["image"] for a in only["at_risk"]] == [str(far)]
    assert planned()["scanned"] == [str(pool)]
    graph = open_graph(str(active), scan_dirs=[str(pool), str(other)])
    plan = make_plan(graph, CommitRequest(image=str(active)))
    commit_and_measure(plan, [active, near, far], tmp_path)


def test_internal_snapshots_of_top_read_the_changed_base(tmp_path: Path) -> None:
    base = create(tmp_path / "base.qcow2", SIZE)
    write(base, 0x11, 0, 8 * MiB)
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(mid, 0x21, 0, 2 * MiB)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    run(["qemu-img", "snapshot", "-c", "early", str(top)])
    write(top, 0x31, 4 * MiB, MiB)
    active = create(tmp_path / "active.qcow2", backing="top.qcow2", cwd=tmp_path)
    plan = plan_for(active, top=str(top), base=str(base))
    # changed = [0,2) + [4,5) MiB; "early" reads through mid, which hides [0,2).
    assert [(os.path.basename(v.image), v.bytes, [(s.name, s.bytes) for s in v.snapshots])
            for v in plan.view_changes] == [("top.qcow2", 0, [("early", MiB)])]  # fmt: skip
    assert (
        "its internal snapshots change too: 'early' 1.0 MiB"
        in backchain("plan", str(active), "--top", str(top)).stdout
    )
    commit_and_measure(plan, [active, mid, top], tmp_path)
