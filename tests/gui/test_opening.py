"""Every way to open an image: File → Open, the Recent menu, `backchain IMAGE`, `--demo`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from backchain.ui.main_window import MainWindow
from tests.images import backchain


def _wait_shown(qtbot: QtBot, window: MainWindow, start: Callable[[], None]) -> list[str]:
    stages: list[str] = []
    window.graph_shown.connect(stages.append)
    start()
    qtbot.waitUntil(lambda: bool({"extents", "error"} & set(stages)), timeout=30_000)
    return stages


def test_file_open_asks_for_a_file_and_opens_it(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[object, ...]] = []

    def answer(*args: object, **_kwargs: object) -> tuple[str, str]:
        asked.append(args)
        return tree["snap2.qcow2"], "Disk images (*.qcow2 *.img *.qcow)"

    # The dialog is the only fake: the user's answer. qemu-img reads the real file.
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(answer))
    file_menu = window.menuBar().actions()[0].menu()
    assert window.open_action in file_menu.actions()
    stages = _wait_shown(qtbot, window, window.open_action.trigger)
    assert "extents" in stages and asked
    assert window.image == tree["snap2.qcow2"]
    assert window.windowTitle() == title_of(tree["snap2.qcow2"])
    assert window.graph is not None and tree["base.qcow2"] in window.graph.paths


def title_of(path: str) -> str:
    """The window title for an image: its name and its folder, so two active.qcow2 differ."""
    return f"{os.path.basename(path)} ({os.path.dirname(path)}) — Backchain"


def test_file_open_cancelled_changes_nothing(
    window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    window.open_action.trigger()
    assert window.image is None and window.windowTitle() == "Backchain"
    assert window.recent_files() == []


def test_recent_menu_lists_the_image_survives_a_new_window_and_reopens_it(
    qtbot: QtBot,
    window: MainWindow,
    tree: dict[str, str],
    tmp_path: Path,
    open_and_wait: Callable[[str], str],
) -> None:
    open_and_wait(tree["snap1.qcow2"])
    open_and_wait(tree["active.qcow2"])
    texts = [action.text() for action in window.recent_menu.actions()]
    assert texts[:2] == [tree["active.qcow2"], tree["snap1.qcow2"]]
    window.settings.sync()

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    second = MainWindow(settings)
    qtbot.addWidget(second)
    second.show()
    entries = second.recent_menu.actions()
    assert [action.text() for action in entries][:2] == texts[:2]
    assert second.recent_menu.isEnabled()
    stages = _wait_shown(qtbot, second, entries[1].trigger)  # snap1.qcow2, as a user clicks it
    assert "extents" in stages
    assert second.image == tree["snap1.qcow2"]
    assert second.windowTitle() == title_of(tree["snap1.qcow2"])
    # Reopening moves it to the top of the list.
    assert second.recent_files()[0] == tree["snap1.qcow2"]


def test_backchain_image_opens_the_window_on_that_image(
    tree: dict[str, str], tmp_path: Path
) -> None:
    result = backchain(tree["active.qcow2"], "--quit-after", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        f"quit-after: showing {tree['active.qcow2']} as '{title_of(tree['active.qcow2'])}' "
        "(extents)" in result.stdout
    )
    assert "Traceback" not in result.stderr


def test_backchain_self_test_on_an_image_prints_what_it_opened(
    tree: dict[str, str], tmp_path: Path
) -> None:
    result = backchain("--self-test", tree["snap2.qcow2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    opened = f"self-test: opened {tree['snap2.qcow2']} as '{title_of(tree['snap2.qcow2'])}'"
    assert opened in result.stdout
    assert "self-test: ok: 5 images, plan commits snap2.qcow2 into base.qcow2" in result.stdout


def test_backchain_demo_builds_and_opens_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the demo's temporary directory lands here
    result = backchain("--demo", "--quit-after", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("quit-after:"))
    assert line.startswith("quit-after: showing ") and line.endswith(" (extents)"), line
    assert "as 'active.qcow2 (" in line, line
    opened = line.split()[2]
    assert opened.startswith(str(tmp_path))
    # --demo removes its temporary folder when the window closes.
    assert not os.path.exists(os.path.dirname(opened))


def test_a_missing_image_on_the_command_line_says_so_and_exits_cleanly(tmp_path: Path) -> None:
    result = backchain(str(tmp_path / "nope.qcow2"), "--quit-after", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(error: " in result.stdout and "nope.qcow2" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_cli_window_keeps_its_settings_where_backchain_settings_says(
    tree: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    chosen = tmp_path / "chosen.ini"
    monkeypatch.setenv("BACKCHAIN_SETTINGS", str(chosen))
    for args in (["--self-test"], [tree["snap1.qcow2"], "--quit-after", "0.1"]):
        result = backchain(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert not (home / ".config").exists()  # QSettings' default place was never written
    recent = QSettings(str(chosen), QSettings.Format.IniFormat).value("recent")
    assert tree["snap1.qcow2"] in list(recent)


def test_backchain_image_scan_dir_shows_siblings_from_another_folder(tmp_path: Path) -> None:
    """``backchain IMAGE --scan DIR``: a clone in another folder is in the window's graph."""
    from tests.images import ChainBuilder

    paths = ChainBuilder(tmp_path / "vm").chain(["base.qcow2", "active.qcow2"])
    clones = tmp_path / "clones"
    clones.mkdir()
    clone = ChainBuilder(clones).overlay("clone.qcow2", paths[0], relative=False)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               BACKCHAIN_SETTINGS=str(tmp_path / "settings.ini"))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "backchain", str(paths[-1]), "--scan", str(clones),
         "--quit-after", "0.5"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "quit-after: 3 images in the graph" in result.stdout, result.stdout  # and the clone
    assert clone.exists()
