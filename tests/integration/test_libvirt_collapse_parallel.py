"""A VM's disks collapse at once on a real libvirtd: pivots wait for all; a failure stops all."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from backchain.core.model import OnReady
from backchain.engines.libvirt import collapse
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_plan
from tests.images import ChainBuilder, MiB, write
from tests.integration.test_libvirt_commit import URI, source_of, view_is_intact
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

NAMES = ["base.qcow2", "snap1.qcow2", "active.qcow2"]


class TimedSink(RecordingSink):
    """Keeps when each phase was first reported and when the pivot was sent."""

    def __init__(self) -> None:
        super().__init__(on_ready=OnReady.ASK)
        self.first: dict[str, float] = {}
        self.pivot_at: float | None = None

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Note the first time of each phase."""
        super().advanced(done, total, phase)
        self.first.setdefault(phase, time.monotonic())

    def logged(self, text: str) -> None:
        """Note when virDomainBlockJobAbort (the pivot) is sent."""
        super().logged(text)
        if text.startswith("# virDomainBlockJobAbort") and self.pivot_at is None:
            self.pivot_at = time.monotonic()


def _two_disks(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    slow = ChainBuilder(tmp_path / "a").chain(NAMES)
    write(slow[-1], 0x5A, 40 * MiB, 12 * MiB)  # vda copies far more than vdb
    quick = ChainBuilder(tmp_path / "b").chain(NAMES)
    return slow, quick


def test_every_disk_pivots_only_once_all_are_ready(tmp_path: Path, domains: Domains) -> None:  # noqa: F811
    slow, quick = _two_disks(tmp_path)
    name = domains.start({"vda": str(slow[-1]), "vdb": str(quick[-1])})
    sinks: dict[str, TimedSink] = {}

    def sink_for(disk: str) -> TimedSink:
        sinks[disk] = TimedSink()
        return sinks[disk]

    results = collapse.collapse_domain(URI, name, sink_for, CancelToken(), run_plan, rate=4 * MiB)
    assert [(r.disk, r.ok) for r in results] == [("vda", True), ("vdb", True)], results
    last_ready = max(s.first["ready"] for s in sinks.values())
    assert sinks["vdb"].first["ready"] < sinks["vda"].first["ready"]  # vdb was ready first
    assert all(s.pivot_at is not None and s.pivot_at >= last_ready for s in sinks.values())
    assert source_of(name, "vda") == str(slow[0]) and source_of(name, "vdb") == str(quick[0])
    assert view_is_intact(slow[0], 3) and view_is_intact(quick[0], 3)


def test_a_disk_that_fails_cancels_the_others_before_their_pivot(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    slow, quick = _two_disks(tmp_path)
    name = domains.start({"vda": str(slow[-1]), "vdb": str(quick[-1])})
    subprocess.run(["chattr", "+i", str(quick[0])], check=True)  # vdb's base cannot be written
    try:
        sinks: dict[str, TimedSink] = {}

        def sink_for(disk: str) -> TimedSink:
            sinks[disk] = TimedSink()
            return sinks[disk]

        results = collapse.collapse_domain(
            URI, name, sink_for, CancelToken(), run_plan, rate=4 * MiB
        )
    finally:
        subprocess.run(["chattr", "-i", str(quick[0])], check=True)
    by_disk = {r.disk: r for r in results}
    assert not by_disk["vdb"].ok and not by_disk["vda"].ok, results
    assert "cancel" in by_disk["vda"].message.lower(), by_disk["vda"].message
    assert sinks["vda"].pivot_at is None or "before its pivot" in by_disk["vda"].message
    assert source_of(name, "vda") == str(slow[-1]) and source_of(name, "vdb") == str(quick[-1])
    assert view_is_intact(slow[-1], 3) and view_is_intact(quick[-1], 3)
    assert "0 of 2 disks collapsed" in collapse.summary(name, results)
