"""The window online: Connect to QEMU…, ACTIVE turned on, the ready question, bandwidth mid-job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from backchain.engines.base import QmpTarget
from backchain.engines.qmp.job import QmpJobControl
from backchain.ui.main_window import MainWindow
from backchain.ui.qmp_connect import OnlineSession, QmpConnectDialog
from tests.images import ChainBuilder, MiB, chain_info, reads, write
from tests.qemu_vm import QemuVM, running_vm


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[QemuVM]:
    """base <- mid <- top on vd0; mid has 8 MiB more so that a throttled job takes a while."""
    layers = ChainBuilder(tmp_path / "images").chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    write(layers[1], 0x22, 40 * MiB, 8 * MiB)
    with running_vm(layers, tmp_path) as machine:
        yield machine


def connect(qtbot: QtBot, window: MainWindow, vm: QemuVM) -> OnlineSession:
    """Connect the window to the VM and wait until the live graph is on screen."""
    session: OnlineSession = window.qmp_session
    with qtbot.waitSignal(session.connected, timeout=30_000):
        session.connect_to(vm.socket)
    return session


def test_connect_dialog_takes_a_socket_or_host_and_port(qtbot: QtBot) -> None:
    dialog = QmpConnectDialog(None, " /run/vm/qmp.sock ", "")
    qtbot.addWidget(dialog)
    assert dialog.value() == "/run/vm/qmp.sock" and dialog.device_value() is None
    dialog.address.setText("localhost:4444")
    dialog.device.setText("vd0")
    assert dialog.value() == "localhost:4444" and dialog.device_value() == "vd0"


def test_connect_menu_has_the_qemu_entry(window: MainWindow) -> None:
    texts = [action.text() for action in window.connect_menu.actions()]
    assert "Connect to &QEMU…" in texts


def test_live_graph_turns_active_on_and_pivot_is_asked_on_ready(
    qtbot: QtBot, window: MainWindow, vm: QemuVM, tmp_path: Path
) -> None:
    session = connect(qtbot, window, vm)
    target = window.connection
    assert isinstance(target, QmpTarget) and isinstance(target.control, QmpJobControl)
    assert target.address == vm.socket
    assert window.plan_panel.engine == "qmp"
    assert window.plan is not None and window.plan.active_commit and window.plan.request.active
    assert session.note.isVisible() and "ACTIVE is on" in session.note.text()
    window.plan_panel.choose_top(str(tmp_path / "images" / "mid.qcow2"))
    assert window.plan is not None and not window.plan.request.active
    assert not session.note.isVisible()
    window.plan_panel.top_combo.setCurrentIndex(0)
    assert window.plan is not None and window.plan.active_commit

    with qtbot.waitSignal(window.job_done, timeout=60_000) as done:
        window.start_job(window.plan)
        # One question for one READY event (there used to be two dialogs).
        qtbot.waitUntil(lambda: window.job_panel.ready_box is not None, timeout=30_000)
        box = window.job_panel.ready_box
        assert box is not None
        boxes = [w for w in QApplication.topLevelWidgets()
                 if isinstance(w, QMessageBox) and w.isVisible()]  # fmt: skip
        assert boxes == [box]
        pivot = next(b for b in box.buttons() if b.text() == "Pivot to base")
        pivot.click()
    assert done.args[0] is True, done.args
    blocks = vm.execute("query-block")
    assert blocks[0]["inserted"]["node-name"] == "base"  # type: ignore[index]
    vm.stop()
    base = tmp_path / "images" / "base.qcow2"
    assert len(chain_info(base)) == 1
    assert reads(base, 0x33, 2 * MiB, MiB) and reads(base, 0x22, 40 * MiB, 8 * MiB)


def test_bandwidth_can_change_while_the_job_runs(
    qtbot: QtBot, window: MainWindow, vm: QemuVM, tmp_path: Path
) -> None:
    connect(qtbot, window, vm)
    window.plan_panel.choose_top(str(tmp_path / "images" / "mid.qcow2"))
    window.plan_panel.rate.setValue(1)
    assert window.plan is not None and window.plan.request.rate == MiB
    updates: list[int] = []
    with qtbot.waitSignal(window.job_done, timeout=60_000) as done:
        worker = window.start_job(window.plan)
        worker.progressed.connect(lambda current, _total, _phase: updates.append(current))
        qtbot.waitUntil(lambda: any(u > 0 for u in updates), timeout=30_000)
        window.plan_panel.rate.setValue(0)
    assert done.args[0] is True, done.args
    log = window.progress.log.toPlainText()
    assert "bandwidth change requested: unlimited" in log and "bandwidth set to 0" in log
    vm.stop()
    top = tmp_path / "images" / "top.qcow2"
    assert [e["filename"] for e in chain_info(top)][-1].endswith("base.qcow2")
    assert len(chain_info(top)) == 2
    assert reads(top, 0x22, 40 * MiB, 8 * MiB) and reads(top, 0x33, 2 * MiB, MiB)
