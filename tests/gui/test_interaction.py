"""The window's controls on real images: context menu, combo boxes, shortcuts, zoom, tooltips."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, QRectF, Qt, QTimer
from PySide6.QtGui import QContextMenuEvent, QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu, QMessageBox, QToolTip
from pytestqt.qtbot import QtBot

from backchain.core.model import Role
from backchain.ui.chain_view import MIN_SCALE
from backchain.ui.main_window import MainWindow
from tests.gui.conftest import answer
from tests.images import ChainBuilder, MiB, reads, write

CTRL = Qt.KeyboardModifier.ControlModifier


def _context_menu_pick(qtbot: QtBot, window: MainWindow, path: str, text: str) -> list[str]:
    """Right-click a node and pick ``text`` from its menu; returns the menu's entries."""
    seen: list[str] = []

    def pick() -> None:
        menu = QApplication.activePopupWidget()
        assert isinstance(menu, QMenu)
        seen.extend(action.text() for action in menu.actions() if action.text())
        next(action for action in menu.actions() if action.text() == text).trigger()
        menu.close()

    point = window.view.node_point(path)
    event = QContextMenuEvent(
        QContextMenuEvent.Reason.Mouse, point, window.view.viewport().mapToGlobal(point)
    )
    QTimer.singleShot(50, pick)
    QApplication.sendEvent(window.view.viewport(), event)  # returns when the menu closes
    return seen


def test_commit_into_this_layer_from_the_context_menu_makes_it_base(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    entries = _context_menu_pick(qtbot, window, tree["snap1.qcow2"], "Commit into this layer")
    assert entries == ["Make this layer top", "Commit into this layer", "Copy path"]
    assert window.plan_panel.base() == tree["snap1.qcow2"]
    assert window.plan_panel.base_combo.currentText() == "snap1.qcow2"
    assert window.plan is not None and window.plan.base == tree["snap1.qcow2"]
    assert window.view.role_of(tree["snap1.qcow2"]) is Role.BASE
    assert window.view.nodes[tree["snap1.qcow2"]].is_base
    assert window.view.role_of(tree["base.qcow2"]) is Role.UNTOUCHED

    _context_menu_pick(qtbot, window, tree["snap2.qcow2"], "Make this layer top")
    assert window.plan_panel.top() == tree["snap2.qcow2"]
    assert window.plan.top == tree["snap2.qcow2"] and window.plan.base == tree["snap1.qcow2"]


def test_the_combo_boxes_drive_the_graph_and_the_graph_drives_them(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    panel, view = window.plan_panel, window.view
    # Combo → graph.
    panel.top_combo.setCurrentIndex(panel.top_combo.findData(tree["snap2.qcow2"]))
    panel.base_combo.setCurrentIndex(panel.base_combo.findData(tree["snap1.qcow2"]))
    assert view.nodes[tree["snap2.qcow2"]].is_top and view.nodes[tree["snap1.qcow2"]].is_base
    assert view.role_of(tree["snap1.qcow2"]) is Role.BASE
    assert view.role_of(tree["active.qcow2"]) is Role.REBASED
    assert not view.nodes[tree["active.qcow2"]].is_top
    # Graph → combo: a click and a shift-click, where the nodes are drawn.
    for path, shift in ((tree["active.qcow2"], False), (tree["base.qcow2"], True)):
        modifier = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
        point = view.node_point(path)
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, point)
    assert panel.top_combo.currentData() == tree["active.qcow2"]
    assert panel.base_combo.currentData() == tree["base.qcow2"]
    assert panel.top_combo.currentText() == "active.qcow2"
    assert view.role_of(tree["base.qcow2"]) is Role.BASE
    # Back to the defaults from the combo boxes: the default plan, nothing marked by hand.
    panel.top_combo.setCurrentIndex(0)
    panel.base_combo.setCurrentIndex(0)
    assert window.plan is not None and window.plan.top == tree["active.qcow2"]
    assert view.nodes[tree["active.qcow2"]].is_top  # the default top is still shown as top


def _activate(qtbot: QtBot, window: MainWindow) -> None:
    window.activateWindow()
    window.raise_()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5_000)
    window.view.setFocus()


def test_keyboard_shortcuts_open_zoom_fit_commit_and_cancel(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert window.open_action.shortcut().toString() == "Ctrl+O"
    assert window.commit_action.shortcut().toString() == "Ctrl+Return"
    assert window.cancel_action.shortcut().toString() == "Esc"
    assert window.zoom_in_action.shortcut().toString() == "Ctrl++"
    assert window.zoom_out_action.shortcut().toString() == "Ctrl+-"
    assert window.fit_action.shortcut().toString() == "Ctrl+0"

    builder = ChainBuilder(tmp_path / "slow")
    paths = builder.chain(["base.qcow2", "active.qcow2"], data=False)
    write(paths[1], 0x5A, 0, 12 * MiB)  # 12 MiB at 1 MiB/s: still running when Esc comes
    active = os.path.realpath(paths[1])
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (active, "")))
    _activate(qtbot, window)
    stages: list[str] = []
    window.graph_shown.connect(stages.append)
    QTest.keyClick(window, Qt.Key.Key_O, CTRL)
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)
    assert window.image == active

    view = window.view
    fitted = view.transform().m11()
    QTest.keyClick(window, Qt.Key.Key_Plus, CTRL)
    assert view.transform().m11() == pytest.approx(fitted * 1.25)
    QTest.keyClick(window, Qt.Key.Key_Minus, CTRL)
    QTest.keyClick(window, Qt.Key.Key_Minus, CTRL)
    assert view.transform().m11() == pytest.approx(fitted * 1.25 * 0.8 * 0.8)
    QTest.keyClick(window, Qt.Key.Key_0, CTRL)
    assert view.transform().m11() == pytest.approx(fitted)

    window.plan_panel.rate.setValue(1)
    asked: list[str] = []

    def confirm() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        asked.append(box.text())
        next(b for b in box.buttons() if b.objectName() == "confirmCommit").click()

    results: list[tuple[bool, str]] = []
    window.job_done.connect(lambda ok, summary, _d: results.append((ok, summary)))
    QTimer.singleShot(100, confirm)
    QTest.keyClick(window, Qt.Key.Key_Return, CTRL)  # returns once the confirmation is answered
    assert asked == ["Commit active.qcow2 into base.qcow2?"]
    assert window.jobs.running and window.cancel_action.isEnabled()
    qtbot.waitUntil(lambda: any(d > 0 for d, _t, _p in window.progress.events), timeout=30_000)
    _activate(qtbot, window)
    QTest.keyClick(window, Qt.Key.Key_Escape)  # asks first; the safe answer is the default
    answer(qtbot, "Cancel the commit?", "Cancel the commit")
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    assert not results[0][0] and results[0][1].startswith("Cancelled")
    assert window.failure_box is None
    assert reads(Path(active), 0x5A, 0, 12 * MiB)


def _visible(window: MainWindow) -> QRectF:
    view = window.view
    return view.mapToScene(view.viewport().rect()).boundingRect()


def test_zoom_pan_and_fit_on_a_200_image_graph(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    builder = ChainBuilder(tmp_path / "big")
    names = [f"layer{i:03d}.qcow2" for i in range(150)]
    chain = builder.chain(names, size="4M", data=False)
    for index in range(0, 150, 3):  # 50 branches beside the chain
        builder.overlay(f"branch{index:03d}.qcow2", chain[index])
    assert open_and_wait(os.path.realpath(chain[-1])) == "extents"
    view = window.view
    assert len(view.nodes) == 200

    window.fit_action.trigger()
    visible = _visible(window)
    for item in view.nodes.values():
        assert visible.contains(item.sceneBoundingRect()), item.layer.name
    fitted = view.transform().m11()

    window.zoom_in_action.trigger()
    assert view.transform().m11() == pytest.approx(fitted * 1.25)
    while view.transform().m11() < 1.0:  # zooming in far enough shows every card in full
        window.zoom_in_action.trigger()
    assert view.transform().m11() >= 1.0
    top = view.nodes[os.path.realpath(chain[-1])]
    view.centerOn(top)
    assert _visible(window).contains(top.sceneBoundingRect())

    # Pan: drag the empty background with the mouse; the visible part of the scene moves.
    before = _visible(window)
    viewport = view.viewport()
    start = QPoint(viewport.width() - 10, viewport.height() // 2)
    assert view.itemAt(start) is None or view.itemAt(start) is not top
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, start + QPoint(-40, -60))
    qtbot.mouseMove(viewport, start + QPoint(-80, -120))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(-80, -120))
    after = _visible(window)
    # Dragged up and left: the view moved down the chain and to the right, by the drag.
    assert after.top() - before.top() == pytest.approx(120 / view.transform().m11(), abs=2)
    assert after.left() > before.left()
    assert window.plan_panel.top() is None  # a drag on the background picks nothing
    # Zooming out by hand goes as far as the whole graph (below MIN_SCALE here), then stops.
    for _ in range(60):
        window.zoom_out_action.trigger()
    smallest = view.transform().m11()
    assert smallest < MIN_SCALE and smallest == pytest.approx(fitted, rel=0.02)
    window.zoom_out_action.trigger()
    assert view.transform().m11() == pytest.approx(smallest)
    assert not view.grab().isNull()


def test_hovering_a_node_shows_path_backing_name_format_and_relativity(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    builder = ChainBuilder(tmp_path / "tips")
    base, mid = builder.chain(["disks/base.qcow2", "disks/mid.qcow2"], size="4M", data=False)
    top = builder.overlay("top.qcow2", mid, relative=False)
    open_and_wait(os.path.realpath(top))
    view = window.view

    def hover(path: Path) -> str:
        QToolTip.hideText()
        point = view.node_point(os.path.realpath(path))
        event = QHelpEvent(QEvent.Type.ToolTip, point, view.viewport().mapToGlobal(point))
        QApplication.sendEvent(view.viewport(), event)
        qtbot.waitUntil(QToolTip.isVisible, timeout=5_000)
        return QToolTip.text()

    tip = hover(mid)
    assert os.path.realpath(mid) in tip
    assert "Backing name (as written)</b>&nbsp;</td><td>base.qcow2<" in tip
    assert "Backing format</b>&nbsp;</td><td>qcow2<" in tip
    assert "Backing path is</b>&nbsp;</td><td>relative<" in tip
    tip = hover(top)
    assert f"<td>{mid}<" in tip  # written absolute, exactly as given
    assert "Backing path is</b>&nbsp;</td><td>absolute<" in tip
    tip = hover(base)
    assert "none (bottom of the chain)" in tip
    QToolTip.hideText()
