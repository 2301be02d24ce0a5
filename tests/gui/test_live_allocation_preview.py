"""The window online: writes still in QEMU's cache show in the preview, exactly while paused."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from backchain.ui.main_window import MainWindow
from backchain.ui.qmp_connect import OnlineSession
from tests.images import MiB
from tests.integration.test_preview_truth_live_allocation import cache_writes, chain
from tests.qemu_vm import running_vm


def test_the_window_counts_cached_writes_from_qemu(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    base, top, _clone = chain(tmp_path)
    with running_vm([base, top], tmp_path) as vm:
        cache_writes(vm)
        session: OnlineSession = window.qmp_session
        with qtbot.waitSignal(session.connected, timeout=30_000):
            session.connect_to(vm.socket)
        plan = window.plan
        assert plan is not None and plan.active_commit
        assert (plan.bytes_to_copy, plan.bytes_to_copy_exact) == (10 * MiB, True)
        assert [(Path(a.image).name, a.bytes, a.exact) for a in plan.at_risk] == [
            ("clone.qcow2", 9 * MiB, True)
        ]
        window.grab().save(str(tmp_path / "live-allocation.png"))
