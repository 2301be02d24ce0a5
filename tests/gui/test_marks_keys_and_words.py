"""After a real commit the window says where the data is and marks what it left behind; the
graph works from the keyboard; scanned folders are remembered; the small words are right."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from backchain import __version__
from backchain.engines import image_locks as base_lock
from backchain.engines import ledger
from backchain.ui import progress_panel
from backchain.ui.main_window import MainWindow
from backchain.ui.menus import about
from backchain.ui.qmp_connect import QmpConnectDialog
from tests.images import ChainBuilder, MiB, reads


def test_after_a_real_commit_the_window_says_where_the_data_is_and_marks_the_layers(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    plan = window.plan
    assert plan is not None and plan.top == tree["active.qcow2"]
    results: list[bool] = []
    stages: list[str] = []
    window.job_done.connect(lambda ok, _s, _d: results.append(ok))
    window.job_done.connect(lambda *_a: window.graph_shown.connect(stages.append))
    window.start_job(plan)
    qtbot.waitUntil(lambda: "extents" in stages, timeout=60_000)
    assert results == [True]
    assert window.outcome.isVisible()
    assert window.outcome.text().startswith(
        "base.qcow2 now holds everything that active.qcow2 read; point the VM at base.qcow2, "
        "or keep using active.qcow2 until base.qcow2 is written."
    )
    # The runner records the ledger once the other half of this work is merged; until then
    # the test records where the runner will, after the real commit succeeded.
    ledger.record(plan)
    stages.clear()
    window.graph_shown.connect(stages.append)
    window.reload()
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)
    nodes = window.view.nodes
    assert nodes[tree["snap1.qcow2"]].mark.startswith("invalid since commit into base.qcow2 on ")
    assert nodes[tree["snap2.qcow2"]].mark.startswith("invalid since commit into base.qcow2")
    assert nodes[tree["active.qcow2"]].mark.startswith("stale since commit into base.qcow2")
    assert nodes[tree["other.qcow2"]].mark.startswith("at risk since commit into base.qcow2")
    assert nodes[tree["base.qcow2"]].mark == ""
    assert "invalid since commit into base.qcow2" in nodes[tree["snap1.qcow2"]].toolTip()
    # The same default commit is offered again; the preview says it already ran.
    assert window.preview.note.isVisible()
    assert "This commit already ran on " in window.preview.note.text()
    window.plan_panel.choose_top(tree["snap2.qcow2"])  # its data is in base already, too
    assert window.preview.note.isVisible()
    window.plan_panel.choose_base(tree["snap1.qcow2"])  # another commit: no such note
    assert window.plan is not None and not window.preview.note.isVisible()


def test_arrow_keys_move_between_nodes_and_enter_picks_top_and_base(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    view = window.view
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=5_000)
    assert view.current == tree["active.qcow2"] and view.nodes[view.current].focused
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert view.current == tree["snap2.qcow2"]
    QTest.keyClick(view, Qt.Key.Key_Return)
    assert window.plan_panel.top() == tree["snap2.qcow2"]
    QTest.keyClick(view, Qt.Key.Key_Down)
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert view.current == tree["base.qcow2"]
    QTest.keyClick(view, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert window.plan_panel.base() == tree["base.qcow2"]
    assert window.plan is not None and window.plan.top == tree["snap2.qcow2"]
    QTest.keyClick(view, Qt.Key.Key_Right)  # other.qcow2 sits right of the chain
    assert view.current == tree["other.qcow2"]
    QTest.keyClick(view, Qt.Key.Key_Up)
    assert view.current != tree["other.qcow2"]


def test_scanned_folders_add_siblings_are_remembered_and_named_in_the_status_bar(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    builder = ChainBuilder(tmp_path / "chain")
    paths = builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    clones = tmp_path / "clones"
    clone = ChainBuilder(clones).overlay("clone.qcow2", paths[0], relative=False)
    active = os.path.realpath(paths[-1])
    open_and_wait(active)
    assert window.graph is not None and os.path.realpath(clone) not in window.graph.paths
    stages: list[str] = []
    window.graph_shown.connect(stages.append)
    window.open_image(active, scan_dirs=[str(clones)])
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)
    assert os.path.realpath(clone) in window.graph.paths
    assert window.plan is not None
    assert any(a.image == os.path.realpath(clone) for a in window.plan.at_risk)
    assert str(clones) in window.status_label.text()
    # Opened again, the chain's folders are remembered (File → Scan folders… adds to them).
    assert open_and_wait(active) == "extents"
    assert os.path.realpath(clone) in window.graph.paths
    assert window.menus.scan_action.isEnabled()


def test_copy_buttons_confirm_and_about_shows_the_version(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    button = window.preview.copy_commands
    button.click()
    assert button.text() == "Copied ✓"
    assert "qemu-img commit" in QGuiApplication.clipboard().text()
    qtbot.waitUntil(lambda: button.text() == "Copy commands", timeout=5_000)
    window.preview.copy_script.click()
    assert window.preview.copy_script.text() == "Script copied ✓"
    box = about(window)
    assert __version__ in box.text()
    box.close()


def test_the_socket_label_shows_its_mnemonic(qtbot: QtBot) -> None:
    dialog = QmpConnectDialog(None)
    qtbot.addWidget(dialog)
    label = next(w for w in dialog.findChildren(QLabel) if w.text() == "&Socket:")
    assert label.buddy() is dialog.address  # Qt draws "&S" as an underlined S, not a literal &


def test_throughput_under_a_rate_limit_is_the_limit_not_the_first_burst(
    monkeypatch: pytest.MonkeyPatch, qtbot: QtBot
) -> None:
    clock = [100.0]
    monkeypatch.setattr(progress_panel.time, "monotonic", lambda: clock[0])
    panel = progress_panel.ProgressPanel()
    qtbot.addWidget(panel)
    panel.job_started("Committing", 24 * MiB, limit=MiB)
    panel.step_started("commit", "qemu-img commit")
    clock[0] += 8.0
    panel.progressed(16 * MiB, 24 * MiB, "commit")  # qemu-img's first burst: 16 MiB after 8 s
    assert "1.0 MiB/s" in panel.status.text(), panel.status.text()
    bar = panel.bar.value()
    clock[0] += 4.0
    panel._on_ticker_timeout()  # the timer's tick, without waiting for it
    assert panel.bar.value() > bar  # the bar moves between reports
    assert panel.bar.value() <= 1000 * 20 / 24 + 1


def test_a_lock_this_window_holds_is_never_blamed_on_another_backchain(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    assert window.plan is not None
    results: list[tuple[bool, str]] = []
    window.job_done.connect(lambda ok, summary, _d: results.append((ok, summary)))
    with base_lock.holding([tree["base.qcow2"]], "a commit this window runs"):
        window.start_job(window.plan)
        qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    ok, summary = results[0]
    assert not ok and "another Backchain" not in summary
    assert "this window's own running job" in summary
    box = window.failure_box
    assert box is not None and "another Backchain" not in box.text()
    box.close()


def test_leftovers_that_nothing_depends_on_are_offered_for_deletion_through_the_plan(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["snap2.qcow2"])
    window.plan_panel.choose_base(tree["base.qcow2"])
    plan = window.plan
    assert plan is not None and [r.image for r in plan.rebased] == [tree["active.qcow2"]]

    def run(shown: object) -> None:
        stages: list[str] = []
        window.job_done.connect(lambda *_a: window.graph_shown.connect(stages.append))
        window.start_job(shown)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: "extents" in stages, timeout=60_000)

    run(plan)
    ledger.record(plan)  # where the runner will record it
    window.reload()
    qtbot.waitUntil(lambda: bool(window.marks), timeout=30_000)
    # snap2 (stale, nothing above it now) and snap1 (invalid, only snap2 above): leftovers.
    window.plan_panel.choose_top(tree["snap2.qcow2"])
    window.plan_panel.choose_base(tree["base.qcow2"])
    assert window.preview.note.isVisible() and window.preview.leftovers_button.isVisible()
    window.preview.leftovers_button.click()
    again = window.plan
    assert window.plan_panel.delete.isChecked() and again is not None
    assert set(again.deleted) == {tree["snap2.qcow2"], tree["snap1.qcow2"]}
    assert again.steps[-1].kind == "delete" and any(s.kind == "verify" for s in again.steps)
    run(again)
    assert not os.path.exists(tree["snap2.qcow2"]) and not os.path.exists(tree["snap1.qcow2"])
    active = Path(tree["active.qcow2"])
    for index in range(4):
        assert reads(active, ChainBuilder.pattern(index), index * MiB, MiB)
