"""Benchmark (reports only): reading a live graph over QMP and online commits, throttled or not.

Run: python -m tests.bench.bench_qmp
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from backchain.core.model import CommitRequest, OnReady
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.graph import read_qmp_graph, root_for
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan as run_qmp_plan
from tests.images import ChainBuilder, MiB, write
from tests.qemu_vm import running_vm


def one(data_mib: int, rate: int, active: bool) -> str:
    """Build base <- mid <- top with ``data_mib`` MiB in the committed layer, commit it online."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        layers = ChainBuilder(directory).chain(["base.qcow2", "mid.qcow2", "top.qcow2"], "256M")
        write(layers[2 if active else 1], 0x5A, 64 * MiB, data_mib * MiB)
        with running_vm(layers, directory) as vm:
            started = time.perf_counter()
            graph = read_qmp_graph(vm.socket)
            read_s = time.perf_counter() - started
            options = {"active": True, "on_ready": OnReady.PIVOT} if active else {"top": "mid"}
            request = CommitRequest(
                image=root_for(graph).path,
                engine="qmp",
                rate=rate,
                **options,  # type: ignore[arg-type]
            )
            plan = make_plan(graph, request)
            sink = RecordingSink()
            started = time.perf_counter()
            run_qmp_plan(plan, sink, CancelToken(), vm.socket)
            run_s = time.perf_counter() - started
    kind = "active+pivot" if active else "intermediate"
    limit = f"{rate // MiB} MiB/s" if rate else "unlimited"
    return (
        f"{kind:13} {data_mib:4} MiB  speed {limit:10}  read graph {read_s * 1000:6.0f} ms  "
        f"commit {run_s:6.2f} s  progress updates {len(sink.progress)}"
    )


def main() -> None:
    """Print one line per case."""
    for data_mib, rate, active in [(128, 0, False), (128, 0, True), (16, 8 * MiB, False)]:
        print(one(data_mib, rate, active))


if __name__ == "__main__":
    main()
