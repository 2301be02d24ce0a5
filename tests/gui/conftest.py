"""GUI test fixtures: a real MainWindow with private settings, and a small real tree of images."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from backchain.ui.main_window import MainWindow
from tests.images import ChainBuilder

CHAIN = ["base.qcow2", "snap1.qcow2", "snap2.qcow2", "active.qcow2"]


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    """The real window, with settings in tmp_path so tests never touch the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.jobs.running:
        win.jobs.cancel()
        qtbot.waitUntil(lambda: not win.jobs.running, timeout=30_000)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, str]:
    """base <- snap1 <- snap2 <- active, plus other.qcow2 on base; real paths by file name."""
    builder = ChainBuilder(tmp_path / "images")
    paths = builder.chain(CHAIN)
    other = builder.overlay("other.qcow2", paths[0])
    names = {p.name: os.path.realpath(p) for p in [*paths, other]}
    return names


@pytest.fixture
def open_and_wait(qtbot: QtBot, window: MainWindow) -> Callable[[str], str]:
    """Open an image and wait until allocation is on screen (or an error is); return the stage."""

    def run(path: str) -> str:
        stages: list[str] = []
        window.graph_shown.connect(stages.append)
        window.open_image(path)
        qtbot.waitUntil(lambda: bool({"extents", "error"} & set(stages)), timeout=30_000)
        window.graph_shown.disconnect(stages.append)
        return "error" if "error" in stages else "extents"

    return run


def answer(qtbot: QtBot, title: str, button_text: str) -> QMessageBox:
    """Wait for the visible message box titled ``title``, click ``button_text``, return the box."""
    found: list[QMessageBox] = []

    def box_is_open() -> bool:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                if widget.windowTitle() == title:
                    found.append(widget)
                    return True
        return False

    qtbot.waitUntil(box_is_open, timeout=30_000)
    box = found[0]
    next(b for b in box.buttons() if b.text() == button_text).click()
    return box
