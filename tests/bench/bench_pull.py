"""Benchmark 7: commit against pull, both timed for real through ``backchain``, on chains at
10/30/50/70/90 % allocation with siblings present; how often the advice picked the faster one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from backchain.core.advice import advise
from backchain.core.model import CommitRequest
from backchain.engines.files.scan import open_graph
from backchain.engines.registry import make_plan as plan
from tests.bench.bench_commit import copy_chain
from tests.bench.common import MiB, Row, create, log, qemu_io, scratch, seconds, sh, timed

SHARES = (10, 30, 50, 70, 90)
SIZE = 512 * MiB
CHUNK = 16 * MiB


def build(directory: Path, share: int) -> None:
    """base (full) <- layer (share %) <- active, plus ``other`` on base and ``branch`` on layer.

    The selection is layer and base: a commit writes layer into base (``other`` reads changed
    data), a pull copies base up into layer (standalone; nothing is at risk).
    """
    create(directory / "base.qcow2", SIZE)
    qemu_io(directory / "base.qcow2", [f"write -P 1 0 {SIZE}"])
    create(directory / "layer.qcow2", SIZE, "base.qcow2")
    chunks = SIZE // CHUNK
    picked = [i for i in range(chunks) if (i + 1) * share // 100 > i * share // 100]
    qemu_io(directory / "layer.qcow2", [f"write -P 2 {i * CHUNK} {CHUNK}" for i in picked])
    create(directory / "active.qcow2", SIZE, "layer.qcow2")
    qemu_io(directory / "active.qcow2", [f"write -P 3 0 {MiB}"])
    for name, backing in (("other.qcow2", "base.qcow2"), ("branch.qcow2", "layer.qcow2")):
        create(directory / name, SIZE, backing)
        qemu_io(directory / name, [f"write -P 4 {SIZE - 4 * MiB} {MiB}"])


def run_commit(directory: Path) -> None:
    sh([sys.executable, "-m", "backchain", "commit", "--yes", "--top", "layer.qcow2",
        "--base", "base.qcow2", str(directory / "active.qcow2")], cwd=directory)  # fmt: skip


def run_pull(directory: Path) -> None:
    sh([sys.executable, "-m", "backchain", "pull", "--yes", "--top", "layer.qcow2",
        str(directory / "active.qcow2")], cwd=directory)  # fmt: skip


def one_share(root: Path, share: int) -> dict[str, object]:
    pristine = root / f"p{share}"
    pristine.mkdir()
    build(pristine, share)
    graph = open_graph(str(pristine / "active.qcow2"))
    active, layer, base = (str(pristine / n) for n in ("active.qcow2", "layer.qcow2", "base.qcow2"))
    request = CommitRequest(image=active, top=layer, base=base)
    choice = advise(plan(graph, request))
    assert choice is not None
    times = {}
    for name, func in (("commit", run_commit), ("pull", run_pull)):
        work = copy_chain(pristine, root / "run")
        times[name] = timed(lambda func=func, work=work: func(work))[1]
        shutil.rmtree(work)
    shutil.rmtree(pristine)
    return {"share": share, "times": times, "choice": choice}


def run() -> list[Row]:
    """Benchmark 7."""
    results = []
    with scratch("pull") as root:
        for share in SHARES:
            results.append(one_share(root, share))
            log(f"pull: {results[-1]}")
    right, saved_bytes, saved_time, details = 0, 0, 0.0, []
    for result in results:
        times: dict[str, float] = result["times"]  # type: ignore[assignment]
        choice = result["choice"]
        advised = choice.operation.value  # type: ignore[attr-defined]
        other = "pull" if advised == "commit" else "commit"
        faster = min(times, key=lambda k: times[k])
        right += advised == faster
        figures = {"commit": choice.commit_bytes, "pull": choice.pull_bytes}  # type: ignore[attr-defined]
        saved_bytes += (figures[other] or 0) - (figures[advised] or 0)
        saved_time += times[other] - times[advised]
        details.append(
            f"{result['share']}%: commit {figures['commit'] // MiB} MiB in "  # type: ignore[operator]
            f"{seconds(times['commit'])}, pull {figures['pull'] // MiB} MiB in "  # type: ignore[operator]
            f"{seconds(times['pull'])}, advised {advised} ({choice.reason})"  # type: ignore[attr-defined]
        )
    return [
        Row(
            item=f"8. commit vs pull through `backchain`, {SIZE // MiB} MiB chains with siblings: "
            + "; ".join(details),
            backchain=f"advice picked the faster direction {right}/{len(SHARES)}",
            comparison=f"bytes saved against the other direction: {saved_bytes // MiB} MiB; "
            f"time saved: {seconds(saved_time)}",
            target="report",
        )
    ]


if __name__ == "__main__":
    from tests.bench.common import table

    print(table(run()))
