"""Commits from the libvirt side tree against a real libvirtd: progress, ready, speed, re-point."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from backchain.engines.libvirt.engine import LibvirtTarget
from backchain.ui.libvirt_disk import SYNC_TEXT
from backchain.ui.main_window import MainWindow
from tests.gui.libvirt_helpers import URI, click_in_box, open_disk, panel_of, settle, source_of
from tests.helpers.checks import chain_reads
from tests.images import ChainBuilder, MiB, reads, write
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

NAMES = ["base.qcow2", "snap1.qcow2", "active.qcow2"]


@pytest.mark.parametrize("answer", ["Pivot to base", "Keep overlay"])
def test_active_commit_from_the_side_tree_shows_progress_and_asks_pivot_or_keep(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains, answer: str,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path / "vm").chain(NAMES)
    name = domains.start({"vda": str(paths[-1])})
    open_disk(qtbot, window, name)
    assert window.connection == LibvirtTarget(URI, name, "vda")
    shown = window.plan
    assert shown is not None and shown.engine == "libvirt" and shown.active_commit
    assert [step.kind for step in shown.steps] == ["virDomainBlockCommit", "virDomainBlockJobAbort"]
    assert any("ACTIVE flag" in text for _role, text in window.preview.lines())
    events: list[tuple[int, int, str]] = []
    with qtbot.waitSignal(window.job_done, timeout=120_000) as done:
        worker = window.start_job(shown)
        assert worker.plan is shown  # the previewed object is the one that runs
        worker.progressed.connect(lambda d, t, p: events.append((d, t, p)))
        text = click_in_box(qtbot, "Commit ready", answer)
        assert "base.qcow2 has caught up" in text
    assert done.args[0] is True, done.args
    settle(qtbot)
    assert events and events == window.progress.events[-len(events) :]
    assert any(phase in ("commit", "ready") for _d, _t, phase in events)
    # libvirt holds cur at end-1 until ready: never a commit bar at 99%.
    assert all(phase != "commit" for d, t, phase in events if t > 0 and d == t - 1)
    log = window.progress.log.toPlainText()
    flag = "VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT" if answer == "Pivot to base" else "flags=0"
    assert "virDomainBlockJobAbort('vda', " in log and flag in log
    if answer == "Pivot to base":
        assert source_of(name) == str(paths[0])
    else:
        assert source_of(name) == str(paths[-1])
        assert chain_reads(paths[-1])
    assert chain_reads(paths[0])  # base holds the whole chain's data


def test_synchronising_is_a_busy_bar_not_99_percent(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path / "vm").chain(NAMES[:2])
    name = domains.start({"vda": str(paths[-1])})
    open_disk(qtbot, window, name)
    session = panel_of(window).disk_session
    end = 64 * MiB
    # What the runner emits while libvirt holds cur at end-1, then once the job is ready.
    window.progress.progressed(end - 1, end, "synchronising")
    session.show_progress(end - 1, end, "synchronising")
    bar = window.progress.bar
    assert bar.maximum() == 0 and bar.format() == "Synchronising"
    assert window.progress.status.text() == SYNC_TEXT
    window.progress.progressed(end, end, "ready")
    session.show_progress(end, end, "ready")
    assert bar.maximum() == 1000 and bar.value() == 1000


def test_bandwidth_changed_mid_job_reaches_libvirts_job_info(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    import libvirt

    paths = ChainBuilder(tmp_path / "vm").chain(NAMES)
    write(paths[1], 0x22, 40 * MiB, 8 * MiB)  # 8 MiB more in snap1: seconds at 1 MiB/s
    name = domains.start({"vda": str(paths[-1])})
    open_disk(qtbot, window, name)
    window.plan_panel.choose_top(str(paths[1]))
    window.plan_panel.rate.setValue(1)
    plan = window.plan
    assert plan is not None and not plan.active_commit
    assert plan.steps[0].call is not None and plan.steps[0].call["bandwidth"] == MiB
    conn = libvirt.open(URI)
    dom = conn.lookupByName(name)

    def bandwidth() -> int | None:
        info = dom.blockJobInfo("vda", libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES)
        return int(info["bandwidth"]) if info else None

    session = panel_of(window).disk_session
    try:
        with qtbot.waitSignal(window.job_done, timeout=120_000) as done:
            worker = window.start_job(plan)
            seen: list[int] = []
            worker.progressed.connect(lambda d, _t, _p: seen.append(d))
            qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
            assert bandwidth() == MiB
            with qtbot.waitSignal(session.speed_changed, timeout=30_000):
                window.plan_panel.rate.setValue(3)
            assert bandwidth() == 3 * MiB  # virDomainGetBlockJobInfo sees the new speed
            with qtbot.waitSignal(session.speed_changed, timeout=30_000):
                window.plan_panel.rate.setValue(0)
    finally:
        conn.close()
    assert done.args[0] is True, done.args
    settle(qtbot)
    log = window.progress.log.toPlainText()
    assert "bandwidth change requested: 3 MiB/s" in log
    assert f"bandwidth: {3 * MiB} bytes/s" in log or f"bandwidth: {MiB} bytes/s" in log
    assert reads(paths[-1], 0x22, 40 * MiB, 8 * MiB) and chain_reads(paths[-1])
    assert reads(paths[0], 0x22, 40 * MiB, 8 * MiB)  # snap1's data is now in base


def test_shut_off_domain_is_committed_and_repointed_from_the_window(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path / "vm").chain(NAMES)
    name = domains.define({"vda": str(paths[-1])})
    open_disk(qtbot, window, name)
    repoint = panel_of(window).disk_session.repoint
    assert repoint.isVisible() and repoint.isChecked()
    plan = window.plan
    assert plan is not None and plan.engine == "libvirt"
    assert plan.steps[0].kind == "virDomainGetState"
    assert plan.steps[-1].kind == "virDomainDefineXML"
    assert "virDomainDefineXML" in window.preview.commands.toPlainText()
    repoint.setChecked(False)
    assert window.plan is not None and window.plan.steps[-1].kind != "virDomainDefineXML"
    assert any("add --repoint" in text for _r, text in window.preview.lines())
    repoint.setChecked(True)
    shown = window.plan
    assert shown is not None and shown.steps[-1].kind == "virDomainDefineXML"
    with qtbot.waitSignal(window.job_done, timeout=120_000) as done:
        assert window.start_job(shown).plan is shown
    assert done.args[0] is True, done.args
    settle(qtbot)
    assert source_of(name, inactive=True) == str(paths[0])
    assert chain_reads(paths[0])
    assert "now uses" in window.progress.log.toPlainText()
    # The window reads the domain again: the disk is base alone now.
    qtbot.waitUntil(lambda: window.graph is not None and window.image == str(paths[0]),
                    timeout=30_000)  # fmt: skip
