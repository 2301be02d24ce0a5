"""The missing-tools dialog: what it tells the user, and that it stays silent when all is there."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from backchain.engines import host_tools
from backchain.ui import tools_dialog


def test_dialog_names_the_tools_and_the_apt_command(qtbot: QtBot) -> None:
    box = tools_dialog.build_missing_tools_dialog(None, ["qemu-img", "qemu-io"], "apt")
    qtbot.addWidget(box)
    assert "qemu-img, qemu-io" in box.text()
    assert "sudo apt install qemu-utils" in box.informativeText()
    assert "sudo dnf install qemu-img" not in box.informativeText()
    # The details list every distribution, in case the guess was wrong.
    assert "zypper: sudo zypper install qemu-tools" in box.detailedText()


def test_unknown_distribution_lists_every_command(qtbot: QtBot) -> None:
    box = tools_dialog.build_missing_tools_dialog(None, ["qemu-img"], None, ["qemu-system-x86_64"])
    qtbot.addWidget(box)
    text = box.informativeText()
    for command in host_tools.install_commands(["qemu-img"]).values():
        assert command in text
    assert "qemu-system-x86_64" in text


def test_no_dialog_when_tools_are_present(qtbot: QtBot) -> None:
    # A modal dialog would block here; returning at all shows none was opened.
    tools_dialog.show_missing_tools_dialog(None)
    tools_dialog.show_missing_tools_dialog(None, [])


def test_dialog_opens_when_qemu_img_is_missing(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for t in host_tools.TOOLS:
        monkeypatch.delenv(t.env, raising=False)
    seen: list[str] = []

    def close_when_shown() -> None:
        from PySide6.QtWidgets import QApplication, QMessageBox

        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen.append(box.text())
        box.accept()

    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, close_when_shown)
    tools_dialog.show_missing_tools_dialog(None)
    assert seen and "qemu-img" in seen[0]
    # The window passes the list it found itself.
    QTimer.singleShot(0, close_when_shown)
    tools_dialog.show_missing_tools_dialog(None, ["qemu-io"])
    assert "qemu-io" in seen[1] and "qemu-img" not in seen[1]
