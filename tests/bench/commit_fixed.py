"""Benchmark 7c, the disk taken out: a commit's whole process less its qemu-img copy and re-point.

On this machine kind one bare 1 GiB commit takes anywhere from 0.6 s to 3.5 s, as the shared
disk allows, so the ratio of the minima swings with the disk, not with Backchain. Here each
qemu-img child is timed by a shell shim around it, and its time is subtracted from its
parent's: what is left is the fixed cost (interpreter, imports, reading and planning, the
journal, the locks, the cross-check's `qemu-img info`), which no disk decides. The same shim
runs the bare side, so its own cost cancels out of the difference.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from tests.bench.bench_commit import copy_chain
from tests.bench.common import Row, in_turn, seconds

SHIM = """#!/bin/sh
start=$(date +%s%N)
{real} "$@"
status=$?
echo "$1 $start $(date +%s%N)" >> "$BACKCHAIN_BENCH_CHILDREN"
exit $status
"""
TIMED_CHILDREN = ("commit", "rebase")
"""The children both sides run; the ``info`` cross-check is Backchain's own and stays in."""


def make_shim(directory: Path) -> Path:
    """A ``qemu-img`` that runs the real one and logs its subcommand's start and end (ns)."""
    real = shutil.which("qemu-img")
    if real is None:
        raise RuntimeError("qemu-img is not on PATH")
    shim = directory / "qemu-img"
    shim.write_text(SHIM.format(real=real))
    shim.chmod(0o755)
    return shim


def _fixed_ms(
    pristine: Path,
    work: Path,
    argvs: Sequence[Sequence[str]],
    env: dict[str, str],
    log: Path,
) -> float:
    """On a fresh copy of ``pristine``: wall milliseconds of ``argvs`` in turn, less the time of
    their timed qemu-img children."""
    copy_chain(pristine, work)
    log.write_text("")
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(list(argv), cwd=work, env=env, stdout=subprocess.DEVNULL, check=True)
    elapsed_ns = (time.perf_counter() - start) * 1e9
    shutil.rmtree(work)
    children = 0
    for line in log.read_text().splitlines():
        name, begin, end = line.split()
        if name in TIMED_CHILDREN:
            children += int(end) - int(begin)
    return (elapsed_ns - children) / 1e6


def disk_free_row(
    pristine: Path,
    work: Path,
    ours: tuple[list[str], dict[str, str]],
    bare: Sequence[Sequence[str]],
    rounds: int,
    bare_minimum: float,
) -> Row:
    """The fixed cost, both sides through the shim, ``rounds`` rounds in turn on ``pristine``;
    ``bare`` are the bare side's qemu-img commands, run through the shim instead."""
    shim_dir = work.parent / "shim"
    shim_dir.mkdir(exist_ok=True)
    shim = make_shim(shim_dir)
    log = shim_dir / "children.log"
    argv, env = ours
    ours_env = {**env, "BACKCHAIN_QEMU_IMG": str(shim), "BACKCHAIN_BENCH_CHILDREN": str(log)}
    bare_env = {**os.environ, "BACKCHAIN_BENCH_CHILDREN": str(log)}
    shimmed = [[str(shim), *command[1:]] for command in bare]
    ours_ms, bare_ms = in_turn(
        [partial(_fixed_ms, pristine, work, [argv], ours_env, log),
         partial(_fixed_ms, pristine, work, shimmed, bare_env, log)],
        rounds,
    )  # fmt: skip
    extra = (min(ours_ms) - min(bare_ms)) / 1000
    return Row(
        item=f"7c. commit's fixed cost, the disk taken out: the whole process less its qemu-img "
        f"commit and rebase (timed by a shim), 1 GiB chain, {rounds} rounds in turn",
        backchain=f"min {min(ours_ms):.1f} ms, median {statistics.median(ours_ms):.1f} ms",
        comparison=f"the bare commands through the same shim: min {min(bare_ms):.1f} ms, median "
        f"{statistics.median(bare_ms):.1f} ms",
        ratio=f"+{seconds(extra)} fixed cost; with the bare 1 GiB commit's minimum above "
        f"({seconds(bare_minimum)}) that is a ratio of {1 + extra / bare_minimum:.3f}",
        target="report",
    )
