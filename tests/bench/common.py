"""Shared pieces of the benchmarks: result rows, timers, scratch directories, image helpers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    item: str
    backchain: str
    comparison: str = "–"
    ratio: str = "–"
    target: str = "–"
    met: str = "–"


def seconds(value: float) -> str:
    """A duration for the table, in the unit that reads best."""
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def ratio(numerator: float, denominator: float, suffix: str = "×") -> str:
    """``a / b`` formatted, or a dash when it cannot be computed."""
    if denominator <= 0:
        return "–"
    return (
        f"{numerator / denominator:.2f}{suffix}"
        if suffix != "×"
        else _times(numerator / denominator)
    )


def _times(value: float) -> str:
    return f"{value:.0f}×" if value >= 10 else f"{value:.2f}×"


def yes(ok: bool) -> str:
    """The 'met?' column."""
    return "yes" if ok else "**no**"


def timed(func: Callable[[], T]) -> tuple[T, float]:
    """Run once and return the result with the wall time it took."""
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def best_of(func: Callable[[], T], repeat: int) -> tuple[T, float]:
    """The result of the last run and the fastest wall time of ``repeat`` runs."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        result, elapsed = timed(func)
        best = min(best, elapsed)
    assert result is not None
    return result, best


def log(text: str) -> None:
    """Progress on stderr, so that stdout holds only the table."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary directory on the real disk (not tmpfs), removed afterwards."""
    root = os.environ.get("BACKCHAIN_BENCH_DIR", "/var/tmp")
    path = Path(tempfile.mkdtemp(prefix=f"backchain-bench-{name}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def child_env() -> dict[str, str]:
    """The environment for child processes, with PYTHONPATH made absolute.

    A relative entry (``PYTHONPATH=gui``) would be looked up from the child's own working
    directory, and the child would then import another checkout's backchain, if any.
    """
    import backchain

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(backchain.__file__)))
    entries = [package_root, os.getcwd()]
    entries += [os.path.abspath(e) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(entries))}


def sh(argv: Sequence[str], cwd: Path | str | None = None) -> str:
    """Run a command; raise with its output if it fails."""
    result = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, check=False, env=child_env()
    )
    if result.returncode != 0:
        raise RuntimeError(f"{list(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def qemu_io(path: Path, commands: Sequence[str], alone: bool = False) -> None:
    """Several qemu-io commands on one image in one process.

    ``alone`` opens the layer without its backing file, so that layers of one chain can be
    written in parallel (each would otherwise lock its backing files).
    """
    argv = ["qemu-io"]
    for command in commands:
        argv += ["-c", command]
    if alone:
        file = {"driver": "file", "filename": str(path)}
        spec = {"driver": "qcow2", "backing": None, "file": file}
        sh([*argv, "json:" + json.dumps(spec)])
    else:
        sh([*argv, "-f", "qcow2", str(path)])


def create(path: Path, size: int, backing: str | None = None, options: str = "") -> Path:
    """qemu-img create (with -u, so the backing file is not opened)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if options:
        argv += ["-o", options]
    if backing is not None:
        argv += ["-u", "-b", backing, "-F", "qcow2"]
    sh([*argv, str(path), str(size)], cwd=path.parent)
    return path


def drop_dirty_pages() -> None:
    """Write back dirty pages so that one timed run does not pay for the previous one."""
    os.sync()


def table(rows: Sequence[Row]) -> str:
    """The Markdown table."""
    head = "| item | Backchain | comparison | ratio | target | met? |\n|---|---|---|---|---|---|"
    lines = [
        f"| {r.item} | {r.backchain} | {r.comparison} | {r.ratio} | {r.target} | {r.met} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def in_turn(sides: Sequence[Callable[[], float]], runs: int) -> list[list[float]]:
    """``runs`` timings of each side, after one warm-up of each, the order rotating from round
    to round (A B C, B C A, C A B, ...): a side that always ran first, or always after the same
    other one, would always meet the state that one left behind (dirty pages, a busy disk)."""
    for side in sides:
        side()
    times: list[list[float]] = [[] for _ in sides]
    for round_ in range(runs):
        for k in range(len(sides)):
            index = (round_ + k) % len(sides)
            times[index].append(sides[index]())
    return times
