"""Property: on generated trees of real images, every predicted figure equals the measurement.

Each example builds a chain and siblings with qemu-img and qemu-io (random virtual sizes, data
and zero clusters, internal snapshots), plans a commit, runs it, and reads every view and every
snapshot's view byte by byte before and after (tests/views.py does the comparison).

Every layer's data pattern is its own and never zero, so a byte whose source changes reads
differently unless both sources are zeros (unallocated, a zero cluster, or past a shorter
layer's end), which the planner knows from the zero clusters it reads.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchain.core.model import CommitRequest
from backchain.engines.files.scan import open_graph
from backchain.engines.registry import make_plan
from tests.images import create, run, write, write_zeroes
from tests.views import commit_and_measure

UNIT = 64 << 10  # one cluster
SIZES = [16, 32, 48]  # in clusters: 1, 2 and 3 MiB


@dataclass
class Image:
    """One generated image: where it sits, its size, its writes and its snapshot."""

    name: str
    backing: int | None
    clusters: int
    writes: list[tuple[bool, int, int]] = field(default_factory=list)
    """(zeros?, first cluster, clusters) in order."""
    snapshot_after: int | None = None


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[Image], int, int]:
    """A chain (index 0 is the bottom) with siblings hung on its layers; top and base."""
    depth = draw(st.integers(2, 4))
    images = [Image("base", None, draw(st.sampled_from(SIZES)))]
    for index in range(1, depth):
        images.append(Image(f"l{index}", index - 1, draw(st.sampled_from(SIZES))))
    for index in range(draw(st.integers(0, 2))):
        images.append(Image(f"s{index}", draw(st.integers(0, depth - 1)),
                            draw(st.sampled_from(SIZES))))  # fmt: skip
    for image in images:
        for _ in range(draw(st.integers(0, 3))):
            first = draw(st.integers(0, image.clusters - 1))
            count = draw(st.integers(1, image.clusters - first))
            image.writes.append((draw(st.booleans()), first, count))
        if draw(st.integers(0, 2)) == 0:
            image.snapshot_after = draw(st.integers(0, len(image.writes)))
    top = draw(st.integers(1, depth - 1))
    return images, top, draw(st.integers(0, top - 1))


def build(images: list[Image], directory: Path) -> list[Path]:
    paths: list[Path] = []
    for index, image in enumerate(images):
        path = directory / f"{image.name}.qcow2"
        size = str(image.clusters * UNIT)
        if image.backing is None:
            create(path, size)
        else:
            backing = paths[image.backing].name
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2",
                 str(path), size], cwd=directory)  # fmt: skip
        for number in range(len(image.writes) + 1):
            if image.snapshot_after == number:
                run(["qemu-img", "snapshot", "-c", f"snap{number}", str(path)])
            if number == len(image.writes):
                break
            zeros, first, count = image.writes[number]
            if zeros:
                write_zeroes(path, first * UNIT, count * UNIT)
            else:
                write(path, 0x20 + 0x13 * index, first * UNIT, count * UNIT)
        paths.append(path)
    return paths


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_prediction_equals_measurement_on_generated_trees(
    case: tuple[list[Image], int, int],
) -> None:
    images, top, base = case
    directory = Path(tempfile.mkdtemp(prefix="backchain-property-"))
    try:
        paths = build(images, directory)
        depth = sum(1 for image in images if not image.name.startswith("s"))
        active = paths[depth - 1]
        plan = make_plan(open_graph(str(active)), CommitRequest(image=str(active),
                         top=str(paths[top]), base=str(paths[base])))  # fmt: skip
        commit_and_measure(plan, paths, directory)
    finally:
        shutil.rmtree(directory)
