"""Collapsing a VM's disks on a real libvirtd: one disk after another, against all at once."""

from __future__ import annotations

import time
from pathlib import Path

from backchain.core.model import OnReady
from backchain.engines.libvirt import collapse
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_plan
from tests.bench.common import MiB, Row, log, scratch, seconds
from tests.images import ChainBuilder, write
from tests.libvirt_daemon import Domains, running

URI = "qemu:///system"
RATE = 16 * MiB
"""Per-disk bandwidth, as a VM's storage would have: the disks then overlap in time."""


def _chains(root: Path, disks: int) -> dict[str, str]:
    found = {}
    for index in range(disks):
        paths = ChainBuilder(root / f"d{index}").chain(["base.qcow2", "snap.qcow2", "top.qcow2"])
        write(paths[-1], 0x5A, 40 * MiB, 16 * MiB)
        found[f"vd{chr(ord('a') + index)}"] = str(paths[-1])
    return found


def _collapse(domains: Domains, root: Path, disks: int, concurrent: bool) -> float:
    name = domains.start(_chains(root, disks))
    plans = collapse.plan_collapse(URI, name, on_ready=OnReady.PIVOT, rate=RATE)
    start = time.perf_counter()
    results = collapse.run_collapse(URI, name, plans, lambda _d: RecordingSink(), CancelToken(),
                                    run_plan, concurrent=concurrent)  # fmt: skip
    took = time.perf_counter() - start
    if not all(r.ok for r in results):
        raise RuntimeError(collapse.summary(name, results))
    return took


def run() -> list[Row]:
    """A 2-disk and a 4-disk collapse, sequential and concurrent, each on fresh chains."""
    rows = []
    with running(), scratch("collapse") as root:
        domains = Domains(URI)
        try:
            for disks in (2, 4):
                log(f"bench_collapse: {disks} disks")
                one_by_one = _collapse(domains, root / f"s{disks}", disks, concurrent=False)
                at_once = _collapse(domains, root / f"c{disks}", disks, concurrent=True)
                rows.append(Row(
                    item=f"9. collapse of a running VM's {disks} disks ({RATE // MiB} MiB/s each)",
                    backchain=f"all at once: {seconds(at_once)}",
                    comparison=f"one after another: {seconds(one_by_one)}",
                    ratio=f"{one_by_one / at_once:.2f}× faster", target="report",
                ))  # fmt: skip
        finally:
            domains.cleanup()
    return rows
