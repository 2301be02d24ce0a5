"""Benchmarks 3 and 6: commit overhead against bare qemu-img, the disk's limit, pull-or-commit."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from backchain.core.model import CommitRequest
from backchain.engines.files.scan import open_graph
from backchain.engines.registry import make_plan as plan
from tests.bench.common import (
    GiB,
    MiB,
    Row,
    create,
    drop_dirty_pages,
    log,
    qemu_io,
    ratio,
    scratch,
    seconds,
    sh,
    timed,
    yes,
)

CHAIN_SIZE = 2 * GiB
CHUNK = 64 * MiB
ROUNDS = 4


def build_half_allocated(directory: Path) -> None:
    """base (2 GiB, a little data) <- mid (1 GiB of data: every other 64 MiB) <- active."""
    create(directory / "base.qcow2", CHAIN_SIZE)
    qemu_io(directory / "base.qcow2", [f"write -P 1 0 {CHUNK}"])
    create(directory / "mid.qcow2", CHAIN_SIZE, "base.qcow2")
    writes = [f"write -P 2 {off} {CHUNK}" for off in range(0, CHAIN_SIZE, 2 * CHUNK)]
    qemu_io(directory / "mid.qcow2", writes)
    create(directory / "active.qcow2", CHAIN_SIZE, "mid.qcow2")


def copy_chain(source: Path, dest: Path) -> Path:
    """A fresh, sparse copy of the pristine chain."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    for item in source.iterdir():
        sh(["cp", "--sparse=always", str(item), str(dest / item.name)])
    drop_dirty_pages()
    return dest


def backchain_commit(directory: Path) -> None:
    """The CLI, as a user runs it: reads the graph, plans, commits, re-points active."""
    sh([sys.executable, "-m", "backchain", "commit", "--yes", "--top", "mid.qcow2",
        "--base", "base.qcow2", str(directory / "active.qcow2")], cwd=directory)  # fmt: skip


def bare_commit(directory: Path) -> None:
    """What a careful script does with qemu-img alone."""
    sh(["qemu-img", "commit", "-q", "-f", "qcow2", "-b", "base.qcow2", "mid.qcow2"], cwd=directory)
    sh(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
        "active.qcow2"], cwd=directory)  # fmt: skip


def dd_bandwidth(directory: Path, size: int = GiB) -> float:
    """Sequential write bandwidth in bytes/s, with the data flushed to disk (conv=fdatasync)."""
    target = directory / "dd.bin"
    result = subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size // MiB}", "conv=fdatasync"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    target.unlink()
    match = re.search(r"copied, ([0-9.]+) s", result.stderr)
    if match is None:
        raise RuntimeError(f"cannot parse dd output: {result.stderr}")
    return size / float(match.group(1))


def commit_overhead() -> list[Row]:
    """Benchmark 3."""
    with scratch("commit") as root:
        pristine = root / "pristine"
        pristine.mkdir()
        log("commit: building a 2 GiB chain, 50% allocated")
        build_half_allocated(pristine)
        graph = open_graph(str(pristine / "active.qcow2"))
        request = CommitRequest(
            image=str(pristine / "active.qcow2"), top=str(pristine / "mid.qcow2")
        )
        to_copy = plan(graph, request).bytes_to_copy or 0
        ours: list[float] = []
        theirs: list[float] = []
        for round_ in range(ROUNDS):
            # Alternate the order so that neither side always runs on a warmer cache.
            order = [("bare", bare_commit), ("ours", backchain_commit)]
            for name, func in order if round_ % 2 == 0 else order[::-1]:
                work = copy_chain(pristine, root / "run")
                _, elapsed = timed(lambda func=func, work=work: func(work))
                (ours if name == "ours" else theirs).append(elapsed)
                shutil.rmtree(work)
        bandwidth = dd_bandwidth(root)
        # Backchain's own fixed cost: start-up, reading the graph and planning, nothing written.
        argv = [sys.executable, "-m", "backchain", "plan", "--json", "--top", "mid.qcow2",
                "--base", "base.qcow2", str(pristine / "active.qcow2")]  # fmt: skip
        t_plan = min(timed(lambda: sh(argv, cwd=pristine))[1] for _ in range(3))
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    limit = to_copy / bandwidth
    log(f"commit: backchain {ours}, bare {theirs}, dd {bandwidth / MiB:.0f} MiB/s")
    return [
        Row(
            item=f"3a. commit overhead, 2 GiB chain 50% allocated ({to_copy // MiB} MiB to copy), "
            f"median of {ROUNDS}",
            backchain=f"`backchain commit --yes`: {seconds(t_ours)}",
            comparison=f"`qemu-img commit -b` + `rebase -u`: {seconds(t_theirs)}",
            ratio=f"{t_ours / t_theirs:.3f}",
            target="≤ 1.03",
            met=yes(t_ours / t_theirs <= 1.03),
        ),
        Row(
            item="3b. Backchain's fixed cost on that chain: `backchain plan --json` (start-up, "
            "read, plan)",
            backchain=seconds(t_plan),
            comparison=f"median difference of the commits: {seconds(t_ours - t_theirs)}",
            target="report",
        ),
        Row(
            item="3c. commit time against the physical limit (bytes to copy ÷ `dd conv=fdatasync`"
            f" bandwidth, {bandwidth / MiB:.0f} MiB/s)",
            backchain=seconds(t_ours),
            comparison=f"limit {seconds(limit)}",
            ratio=ratio(t_ours, limit) + " of the limit",
            target="report",
        ),
    ]


SHARES = (10, 30, 50, 70, 90)
ADVICE_SIZE = 512 * MiB
ADVICE_CHUNK = 16 * MiB


def build_advice_chain(directory: Path, share: int) -> None:
    """base (full) <- layer (share % allocated) <- overlay (empty)."""
    create(directory / "base.qcow2", ADVICE_SIZE)
    qemu_io(directory / "base.qcow2", [f"write -P 1 0 {ADVICE_SIZE}"])
    create(directory / "layer.qcow2", ADVICE_SIZE, "base.qcow2")
    chunks = ADVICE_SIZE // ADVICE_CHUNK
    # Spread the layer's data evenly: chunk i is written when it crosses a share boundary.
    picked = [i for i in range(chunks) if (i + 1) * share // 100 > i * share // 100]
    writes = [f"write -P 2 {i * ADVICE_CHUNK} {ADVICE_CHUNK}" for i in picked]
    qemu_io(directory / "layer.qcow2", writes)
    create(directory / "overlay.qcow2", ADVICE_SIZE, "layer.qcow2")


def offline_commit(directory: Path) -> None:
    """Commit the layer into base, and re-point the overlay."""
    sh(["qemu-img", "commit", "-q", "-b", "base.qcow2", "layer.qcow2"], cwd=directory)
    sh(["qemu-img", "rebase", "-u", "-b", "base.qcow2", "-F", "qcow2", "overlay.qcow2"],
       cwd=directory)  # fmt: skip


def pull(directory: Path) -> None:
    """Stream base's data up into the layer (safe-mode rebase onto base's own backing: none)."""
    sh(["qemu-img", "rebase", "-f", "qcow2", "-b", "", "layer.qcow2"], cwd=directory)


def advice() -> list[Row]:
    """Benchmark 6."""
    rows = []
    right = 0
    details = []
    with scratch("advice") as root:
        for share in SHARES:
            pristine = root / f"p{share}"
            pristine.mkdir()
            build_advice_chain(pristine, share)
            graph = open_graph(str(pristine / "overlay.qcow2"))
            request = CommitRequest(image=str(pristine / "overlay.qcow2"),
                                    top=str(pristine / "layer.qcow2"))  # fmt: skip
            direction = plan(graph, request).advice[0].direction
            times = {}
            for name, func in (("commit", offline_commit), ("pull", pull)):
                work = copy_chain(pristine, root / "run")
                times[name] = timed(lambda func=func, work=work: func(work))[1]
                shutil.rmtree(work)
            shutil.rmtree(pristine)
            faster = min(times, key=lambda k: times[k])
            right += direction == faster
            details.append(f"{share}%: commit {seconds(times['commit'])} / pull "
                           f"{seconds(times['pull'])}, advised {direction}")  # fmt: skip
            log("advice: " + details[-1])
    rows.append(
        Row(
            item=f"6. pull-or-commit advice, {ADVICE_SIZE // MiB} MiB layers: "
            + "; ".join(details),
            backchain=f"advice picked the faster direction {right}/{len(SHARES)}",
            target="report",
        )
    )
    return rows


def run() -> list[Row]:
    """Benchmarks 3 and 6."""
    return commit_overhead() + advice()
