"""Benchmark 2: a 100-layer chain of 1 GiB layers, to a complete ImageGraph with extents."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph
from backchain.engines.files.qcow2_alloc import own_allocation
from backchain.engines.files.scan import load_extents, open_graph, read_chain
from tests.bench.common import (
    GiB,
    KiB,
    MiB,
    Row,
    create,
    log,
    qemu_io,
    ratio,
    scratch,
    seconds,
    timed,
    yes,
)

LAYERS = 100
DATA_WRITES = 40
ZERO_WRITES = 160


def build_chain(directory: Path, seed: int = 11) -> Path:
    """100 layers; each has scattered small data writes and larger zero-cluster writes.

    Zero clusters count as allocation but take no disk space, which keeps the chain at a few
    hundred MiB on disk while each layer still has hundreds of extents.
    """
    rng = random.Random(seed)
    previous: str | None = None
    jobs: list[tuple[Path, list[str]]] = []
    for index in range(LAYERS):
        path = directory / f"layer{index:03d}.qcow2"
        create(path, GiB, previous)
        ops = []
        for _ in range(DATA_WRITES):
            length = rng.choice([4 * KiB, 64 * KiB, 192 * KiB])
            offset = rng.randrange(0, GiB - length, 4096)
            ops.append(f"write -P {index % 250 + 1} {offset} {length}")
        for _ in range(ZERO_WRITES):
            length = rng.choice([64 * KiB, 512 * KiB, 4 * MiB])
            ops.append(f"write -z {rng.randrange(0, GiB - length, 64 * KiB)} {length}")
        jobs.append((path, ops))
        previous = path.name

    def fill(job: tuple[Path, list[str]]) -> None:
        qemu_io(job[0], job[1], alone=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fill, jobs))
    return directory / f"layer{LAYERS - 1:03d}.qcow2"


def with_tables(graph: ImageGraph) -> ImageGraph:
    """Extents from the L1/L2 reader, one layer after another in this thread."""
    return graph.with_extents({layer.path: own_allocation(layer.path) for layer in graph})


def with_qemu_img_map(graph: ImageGraph) -> ImageGraph:
    """Extents from parallel ``qemu-img map`` runs (the lead's loader, forced to qemu-img)."""
    return load_extents(graph, reader="qemu-img")


def _same(a: ImageGraph, b: ImageGraph) -> tuple[int, int]:
    equal = sum(1 for layer in a if layer.extents == b.layer(layer.path).extents)
    return equal, len(a)


def run() -> list[Row]:
    """Build the chain, time the header walk plus each way of reading allocation."""
    with scratch("extents") as directory:
        log("extents: building 100 layers of 1 GiB")
        top = build_chain(directory)
        read_chain(str(top))  # warm the page cache alike for both
        headers, t_headers = timed(lambda: read_chain(str(top), with_qemu_info=False))
        _, t_info = timed(lambda: read_chain(str(top)))
        mapped, t_map = timed(lambda: with_qemu_img_map(headers))
        tables, t_tables = timed(lambda: with_tables(headers))
        t_tables = min(t_tables, timed(lambda: with_tables(headers))[1])
        equal, total = _same(mapped, tables)
        extents = sum(len(layer.extents or ExtentSet.empty()) for layer in tables)
        # The complete graph as open_graph builds it: qemu-img info over the chain, then maps.
        complete_tables = t_info + t_tables
        complete_map = t_info + t_map
        log(f"extents: info {seconds(t_info)}, map {seconds(t_map)}, tables {seconds(t_tables)}, "
            f"{equal}/{total} layers equal")  # fmt: skip
        opened, t_open = timed(lambda: open_graph(str(top)))
        t_open = min(t_open, timed(lambda: open_graph(str(top)))[1])
        complete = sum(1 for layer in opened if layer.extents is not None)
    rows = [
        Row(
            item=f"2a. allocation of {LAYERS} × 1 GiB layers ({extents} extents in all); "
            f"exact: {equal}/{total} layers equal",
            backchain=f"L1/L2 reader: {seconds(t_tables)}",
            comparison=f"parallel `qemu-img map`: {seconds(t_map)}",
            ratio=ratio(t_map, t_tables) + " faster",
            target="exact, and the faster one kept",
            met=yes(equal == total and t_tables < t_map),
        ),
        Row(
            item="2b. complete ImageGraph with extents (headers + `qemu-img info --backing-chain`"
            " + allocation)",
            backchain=f"{seconds(complete_tables)} (headers alone {seconds(t_headers)}); "
            f"`open_graph()` end to end (+ sibling scan, lock probes): {seconds(t_open)}, "
            f"{complete}/{len(opened)} layers with extents",
            comparison=f"with `qemu-img map`: {seconds(complete_map)}",
            ratio=ratio(complete_map, complete_tables) + " faster",
            target="< 2 s",
            met=yes(complete_tables < 2.0),
        ),
    ]
    return rows
