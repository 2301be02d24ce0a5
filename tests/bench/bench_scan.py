"""Benchmark 1: a directory of 1,000 qcow2 images in chains and trees, headers vs qemu-img info."""

from __future__ import annotations

import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backchain.core.graph import ImageGraph
from backchain.engines.files.scan import read_chain, scan_directories
from tests.bench.common import GiB, Row, create, log, ratio, scratch, seconds, timed, yes

IMAGES = 1000
TREES = 50
# qemu-img info runs on a sample first; all of them only if that takes under a minute.
SAMPLE = 50
FULL_RUN_LIMIT = 60.0


def build_forest(directory: Path, seed: int = 7) -> tuple[list[Path], list[Path]]:
    """1,000 images: 50 trees, each image backed by a random earlier image of its tree."""
    rng = random.Random(seed)
    jobs: list[tuple[Path, str | None]] = []
    bases: list[Path] = []
    per_tree = IMAGES // TREES
    for tree in range(TREES):
        names: list[str] = []
        for index in range(per_tree):
            name = f"t{tree:02d}-{index:03d}.qcow2"
            # Mostly extend a chain (the newest image), sometimes branch off an older one.
            if not names:
                backing = None
            elif rng.random() < 0.7:
                backing = names[-1]
            else:
                backing = rng.choice(names)
            jobs.append((directory / name, backing))
            names.append(name)
        bases.append(directory / names[0])

    def one(job: tuple[Path, str | None]) -> None:
        create(job[0], GiB, job[1])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, jobs))
    return [path for path, _ in jobs], bases


def backchain_scan(directory: Path, bases: list[Path]) -> ImageGraph:
    """What Backchain does: headers of the known chains, then a header scan of the directory."""
    graph = ImageGraph()
    for base in bases:
        graph = graph.with_layers(read_chain(str(base), with_qemu_info=False))
    return scan_directories(graph, [str(directory)])


def qemu_img_info(paths: list[Path]) -> None:
    """What a script would do: one qemu-img info per file."""
    for path in paths:
        subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(path)],
            capture_output=True,
            check=True,
        )


def run() -> list[Row]:
    """Build the forest, time both ways, return the table row."""
    with scratch("scan") as directory:
        log("scan: creating 1,000 qcow2 images")
        paths, bases = build_forest(directory)
        backchain_scan(directory, bases)  # warm the page cache for both sides alike
        graph, ours = timed(lambda: backchain_scan(directory, bases))
        found = len(graph)
        ours = min(ours, timed(lambda: backchain_scan(directory, bases))[1])
        log(f"scan: Backchain found {found} images in {seconds(ours)}")
        _, sample = timed(lambda: qemu_img_info(paths[:SAMPLE]))
        estimate = sample / SAMPLE * len(paths)
        if estimate < FULL_RUN_LIMIT:
            _, theirs = timed(lambda: qemu_img_info(paths))
            how = f"{len(paths)} × `qemu-img info`: {seconds(theirs)}"
        else:
            theirs = estimate
            how = f"{SAMPLE} × `qemu-img info` extrapolated to {len(paths)}: {seconds(theirs)}"
        log(f"scan: {how}")
    return [
        Row(
            item=f"1. directory scan, {IMAGES} qcow2 images in {TREES} trees "
            f"(graph of {found} built)",
            backchain=seconds(ours),
            comparison=how,
            ratio=ratio(theirs, ours) + " faster",
            target="< 1 s and ≥ 20×",
            met=yes(ours < 1.0 and theirs / ours >= 20),
        )
    ]
