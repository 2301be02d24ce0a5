"""The window on real images: clicking picks top and base, options recolour, the planner speaks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from backchain.core.model import Role
from backchain.ui.confirm import build_confirmation
from backchain.ui.main_window import MainWindow


def click(qtbot: QtBot, window: MainWindow, path: str, shift: bool = False) -> None:
    """Click a node where it is drawn, as a user would."""
    modifier = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    point = window.view.node_point(path)
    qtbot.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, modifier, point)


def test_clicking_a_node_makes_it_top_and_shift_click_makes_base(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    assert open_and_wait(tree["active.qcow2"]) == "extents"
    click(qtbot, window, tree["snap2.qcow2"])
    click(qtbot, window, tree["base.qcow2"], shift=True)
    assert window.plan_panel.top() == tree["snap2.qcow2"]
    assert window.plan_panel.base() == tree["base.qcow2"]
    assert window.plan_panel.top_combo.currentText() == "snap2.qcow2"
    assert window.plan_panel.base_combo.currentText() == "base.qcow2"
    assert window.plan is not None
    assert (window.plan.top, window.plan.base) == (tree["snap2.qcow2"], tree["base.qcow2"])
    view = window.view
    assert view.role_of(tree["base.qcow2"]) is Role.BASE
    assert view.role_of(tree["snap1.qcow2"]) is Role.INVALID
    assert view.role_of(tree["snap2.qcow2"]) is Role.STALE
    assert view.role_of(tree["active.qcow2"]) is Role.REBASED
    assert view.role_of(tree["other.qcow2"]) is Role.AT_RISK
    assert view.nodes[tree["snap2.qcow2"]].is_top and view.nodes[tree["base.qcow2"]].is_base
    assert window.plan_panel.commit_button.isEnabled()


def test_shallow_and_delete_recolour_the_graph_and_change_the_consequences(
    window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    view, panel = window.view, window.plan_panel
    # Default, as libvirt: the active layer into the bottom of the chain.
    assert view.role_of(tree["base.qcow2"]) is Role.BASE
    assert view.role_of(tree["snap1.qcow2"]) is Role.INVALID
    assert view.role_of(tree["active.qcow2"]) is Role.STALE
    before = window.preview.lines()
    assert any("other.qcow2" in text and "would read changed data" in text for _, text in before)

    panel.shallow.setChecked(True)
    assert view.role_of(tree["snap2.qcow2"]) is Role.BASE
    assert view.role_of(tree["snap1.qcow2"]) is Role.UNTOUCHED
    assert view.role_of(tree["base.qcow2"]) is Role.UNTOUCHED
    shallow = window.preview.lines()
    assert shallow != before
    assert shallow[0][0] == "base" and shallow[0][1].startswith("snap2.qcow2: receives")
    assert not any(role == "at_risk" for role, _ in shallow)

    panel.delete.setChecked(True)
    assert view.role_of(tree["active.qcow2"]) is Role.DELETED
    assert ("deleted", "active.qcow2: deleted after the commit succeeds") in window.preview.lines()
    assert "rm -f -- " + tree["active.qcow2"] in window.preview.commands.toPlainText()


def test_an_invalid_pair_shows_the_planners_message_and_disables_commit(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    click(qtbot, window, tree["snap1.qcow2"])
    click(qtbot, window, tree["snap2.qcow2"], shift=True)
    message = window.plan_panel.message
    assert message.isVisible()
    # Human words first, with the fix; the planner's own text is in Details (the tooltip).
    assert message.text() == (
        "base must be below top: pick a lower layer as base, or a higher one as top"
    )
    assert window.plan_panel.planner_text() == (
        f"could not find image '{tree['snap2.qcow2']}' beneath '{tree['snap1.qcow2']}' "
        f"in chain for '{tree['active.qcow2']}'"
    )
    assert not window.plan_panel.commit_button.isEnabled()
    assert not window.commit_action.isEnabled()
    assert window.plan is None
    # Choosing a valid base again clears the message and enables Commit.
    click(qtbot, window, tree["base.qcow2"], shift=True)
    assert not message.isVisible()
    assert window.plan_panel.commit_button.isEnabled()


def test_a_corrupt_image_shows_an_error_in_the_window_not_a_traceback(
    window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str], capfd: object
) -> None:
    bad = tmp_path / "broken.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\x00\x00\x00\x03" + b"\xff" * 60)
    assert open_and_wait(str(bad)) == "error"
    assert window.banner.isVisible()
    assert "broken.qcow2" in window.banner.text()
    assert "Traceback" not in capfd.readouterr().err  # type: ignore[attr-defined]


def test_the_confirmation_defaults_to_cancel_when_a_sibling_has_bytes_at_risk(
    window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    assert window.plan is not None and window.plan.at_risk
    box = build_confirmation(window.plan, window)
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    assert "other.qcow2" in box.informativeText() and "At risk" in box.informativeText()

    window.plan_panel.shallow.setChecked(True)  # active into snap2: no sibling touched
    assert window.plan is not None and not window.plan.at_risk
    box = build_confirmation(window.plan, window)
    assert box.defaultButton().objectName() == "confirmCommit"


def test_title_and_recent_files_follow_the_opened_image(
    window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    assert window.windowTitle().startswith("active.qcow2 (")
    assert window.recent_files()[0] == tree["active.qcow2"]
    assert window.recent_menu.actions()[0].text() == tree["active.qcow2"]
    assert os.path.basename(window.image or "") == "active.qcow2"


def test_dropping_an_image_on_the_window_opens_it(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str]
) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(tree["snap2.qcow2"])])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        data,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    stages: list[str] = []
    window.graph_shown.connect(stages.append)
    window.dropEvent(event)
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)
    assert window.image == tree["snap2.qcow2"]
    assert window.windowTitle().startswith("snap2.qcow2")
