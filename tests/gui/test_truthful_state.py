"""The window tells the truth about state: locked mid-job, cleared after a failed open, and it
asks before it abandons work (Esc, closing, Dismiss), saying what the files will be left as."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from backchain.engines import journal
from backchain.ui.main_window import MainWindow
from tests.gui.conftest import answer
from tests.gui.test_window import click
from tests.images import ChainBuilder, MiB, reads, write


@pytest.fixture
def slow(tmp_path: Path) -> dict[str, str]:
    """base <- snap1 <- active with 24 MiB in snap1: minutes at 1 MiB/s, so a job stays busy."""
    paths = ChainBuilder(tmp_path / "slow").chain(
        ["base.qcow2", "snap1.qcow2", "active.qcow2"], data=False
    )
    write(paths[1], 0x22, 0, 24 * MiB)
    write(paths[2], 0x33, 30 * MiB, MiB)
    return {p.name: os.path.realpath(p) for p in paths}


def _start_slow(qtbot: QtBot, window: MainWindow, slow: dict[str, str]) -> None:
    """Commit snap1 into base at 1 MiB/s and return once the first progress arrived."""
    window.plan_panel.choose_top(slow["snap1.qcow2"])
    window.plan_panel.rate.setValue(1)
    assert window.plan is not None
    worker = window.start_job(window.plan)
    first: list[int] = []
    worker.progressed.connect(lambda done, _t, _p: first.append(done))
    qtbot.waitUntil(lambda: bool(first), timeout=30_000)


@pytest.fixture
def running(
    qtbot: QtBot, window: MainWindow, slow: dict[str, str], open_and_wait: Callable[[str], str]
) -> Iterator[dict[str, str]]:
    """The slow commit, running; the window fixture cancels whatever still runs at the end."""
    open_and_wait(slow["active.qcow2"])
    _start_slow(qtbot, window, slow)
    yield slow


def test_controls_are_locked_mid_job_and_the_running_plan_stays_shown(
    qtbot: QtBot, window: MainWindow, running: dict[str, str]
) -> None:
    shown = window.plan
    assert shown is not None and window.jobs.running
    panel = window.plan_panel
    for widget in (panel.top_combo, panel.base_combo, panel.shallow, panel.delete,
                   panel.keep_relative, panel.commit_button, panel.rate):  # fmt: skip
        assert not widget.isEnabled(), widget.accessibleName()
    assert not window.commit_action.isEnabled() and window.cancel_action.isEnabled()
    assert not window.open_action.isEnabled() and not window.connect_menu.isEnabled()
    roles = {path: window.view.role_of(path) for path in window.view.nodes}
    # Clicking another layer (and Enter on the keyboard) picks nothing while the job runs.
    click(qtbot, window, running["active.qcow2"])
    click(qtbot, window, running["base.qcow2"], shift=True)
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Return)
    window.open_image(running["active.qcow2"])  # a drop or a recent file: refused too
    assert window.plan is shown and window.preview.plan is shown
    assert panel.top() == running["snap1.qcow2"]
    assert {path: window.view.role_of(path) for path in window.view.nodes} == roles
    stages: list[str] = []
    window.job_done.connect(lambda *_a: window.graph_shown.connect(stages.append))
    window.jobs.cancel()
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)  # read again after the job
    assert panel.top_combo.isEnabled()
    assert panel.shallow.isEnabled() and window.open_action.isEnabled()


def test_esc_asks_first_and_keep_running_keeps_it_running(
    qtbot: QtBot, window: MainWindow, running: dict[str, str]
) -> None:
    window.activateWindow()
    window.cancel_action.trigger()  # Esc
    box = answer(qtbot, "Cancel the commit?", "Keep running")
    assert "base.qcow2 is left partly written" in box.informativeText()
    assert "Running the same commit again completes it" in box.informativeText()
    qtbot.wait(50)
    assert window.jobs.running
    _stop(qtbot, window)


def _stop(qtbot: QtBot, window: MainWindow) -> None:
    """End the job before pytest-qt closes the window (closing mid-job would ask)."""
    window.jobs.cancel()
    qtbot.waitUntil(lambda: not window.jobs.running, timeout=30_000)


def test_closing_mid_job_asks_then_cancels_and_closes(
    qtbot: QtBot, window: MainWindow, running: dict[str, str]
) -> None:
    window.close()
    box = answer(qtbot, "Quit while a commit runs?", "Keep running")
    assert "partly written" in box.informativeText()
    assert window.isVisible() and window.jobs.running
    window.close()  # Ctrl+Q goes the same way
    answer(qtbot, "Quit while a commit runs?", "Cancel the commit and quit")
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.jobs.running
    active = Path(running["active.qcow2"])
    assert reads(active, 0x22, 0, 24 * MiB) and reads(active, 0x33, 30 * MiB, MiB)


def _interrupted(qtbot: QtBot, window: MainWindow, slow: dict[str, str]) -> None:
    """Cancel the slow commit (confirmed), so that the journal keeps it as unfinished."""
    stages: list[str] = []
    window.job_done.connect(lambda *_a: window.graph_shown.connect(stages.append))
    window.cancel_job()
    answer(qtbot, "Cancel the commit?", "Cancel the commit")
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)
    qtbot.waitUntil(lambda: not window.journal_banner.isHidden(), timeout=10_000)


def test_dismiss_asks_first_and_rerun_goes_through_the_job_panel(
    qtbot: QtBot, window: MainWindow, running: dict[str, str]
) -> None:
    _interrupted(qtbot, window, running)
    banner = window.journal_banner
    assert "was cancelled" in banner.label.text()
    banner.dismiss_button.click()
    box = answer(qtbot, "Forget the unfinished commit?", "Keep it")
    assert "The files stay exactly as they are now." in box.informativeText()
    assert not banner.isHidden() and journal.unfinished_jobs(
        window.graph.paths if window.graph else []
    )
    # Re-run: the same job panel, with its bar and Cancel; the plan panel is locked meanwhile.
    window.plan_panel.rate.setValue(0)
    resumed: list[bool] = []
    banner.resumed.connect(lambda ok, _s, _d: resumed.append(ok))
    banner.rerun_button.click()
    assert window.jobs.running and window.progress.cancel_button.isEnabled()
    assert window.progress.status.text().startswith("Re-running the commit of snap1.qcow2")
    assert not window.plan_panel.top_combo.isEnabled()
    qtbot.waitUntil(lambda: bool(resumed), timeout=120_000)
    assert resumed == [True]
    assert window.progress.events and window.progress.bar.format() == "done"
    qtbot.waitUntil(lambda: banner.isHidden() and not window.jobs.running, timeout=30_000)
    assert reads(Path(running["base.qcow2"]), 0x22, 0, 24 * MiB)


def test_dismiss_forgets_the_job_once_confirmed(
    qtbot: QtBot, window: MainWindow, running: dict[str, str]
) -> None:
    _interrupted(qtbot, window, running)
    window.journal_banner.dismiss_button.click()
    answer(qtbot, "Forget the unfinished commit?", "Forget it")
    assert window.journal_banner.isHidden()
    assert journal.unfinished_jobs(list(running.values())) == []


def _corrupt(path: Path) -> str:
    """A file with qcow2's magic and a nonsense header version."""
    path.write_bytes(b"QFI\xfb" + struct.pack(">I", 1253200887) + bytes(504))
    return str(path)


def _assert_cleared(window: MainWindow) -> None:
    assert window.graph is None and window.image is None and window.plan is None
    assert window.view.nodes == {}
    assert not window.commit_action.isEnabled()
    assert not window.plan_panel.commit_button.isEnabled()
    assert window.windowTitle() == "Backchain"
    assert window.preview.commands.toPlainText() == ""
    assert window.banner.isVisible()


def test_a_failed_open_clears_the_previous_graph(
    qtbot: QtBot,
    window: MainWindow,
    tree: dict[str, str],
    tmp_path: Path,
    open_and_wait: Callable[[str], str],
) -> None:
    open_and_wait(tree["active.qcow2"])
    assert window.commit_action.isEnabled()
    bad = _corrupt(tmp_path / "corrupt.qcow2")
    assert open_and_wait(bad) == "error"
    _assert_cleared(window)
    assert window.banner.text() == f"{bad}: not a valid qcow2 image (header version 1253200887)"
    assert bad not in window.recent_files()  # a file that failed leaves Open recent
    # The error banner can be closed.
    window.banner.close_button.click()
    assert not window.banner.isVisible()


def test_a_recent_file_that_was_deleted_clears_the_graph_and_leaves_the_list(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["other.qcow2"])
    open_and_wait(tree["active.qcow2"])
    os.unlink(tree["other.qcow2"])
    entry = next(a for a in window.recent_menu.actions() if a.text() == tree["other.qcow2"])
    stages: list[str] = []
    window.graph_shown.connect(stages.append)
    entry.trigger()
    qtbot.waitUntil(lambda: "error" in stages, timeout=30_000)
    _assert_cleared(window)
    assert "does not exist" in window.banner.text()
    assert tree["other.qcow2"] not in window.recent_files()


def test_a_bad_qmp_socket_clears_the_graph_and_says_nobody_listens(
    qtbot: QtBot,
    window: MainWindow,
    tree: dict[str, str],
    tmp_path: Path,
    open_and_wait: Callable[[str], str],
) -> None:
    open_and_wait(tree["active.qcow2"])
    socket = str(tmp_path / "nobody.sock")
    with qtbot.waitSignal(window.graph_shown, timeout=30_000) as shown:
        window.qmp_session.connect_to(socket)
    assert shown.args == ["error"]
    _assert_cleared(window)
    assert window.banner.text().startswith(f"no QEMU is listening at {socket}")
    assert "Errno" not in window.banner.text() and "Errno" in window.banner.toolTip()


def test_rerun_of_an_interrupted_active_commit_keeps_the_overlay_it_was_asked_to_keep(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """A killed `commit --qmp --keep-overlay`, re-run from the window's banner: QEMU's job is
    taken over and ends as recorded (top stays the active layer), with no Pivot question."""
    import json
    import subprocess
    import sys
    import time

    from tests.images import create
    from tests.qemu_vm import running_vm

    images = [tmp_path / "vm" / n for n in ("base.qcow2", "top.qcow2")]
    images[0].parent.mkdir()
    create(images[0], "256M")
    create(images[1], backing="base.qcow2", cwd=images[0].parent)
    write(images[1], 0x33, 0, 48 * MiB)
    jobs = Path(os.environ["BACKCHAIN_STATE_DIR"]) / "jobs"
    earlier = set(jobs.glob("*.json"))
    with running_vm(images, tmp_path, names=["base", "top"]) as vm:
        argv = ["commit", "--qmp", vm.socket, "--active", "--keep-overlay",
                "--rate", str(4 * MiB), "--yes"]  # fmt: skip
        first = subprocess.Popen([sys.executable, "-m", "backchain", *argv],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while not set(jobs.glob("*.json")) - earlier and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # QEMU copies; the job survives its client
        first.kill()
        first.wait(timeout=30)
        (made,) = set(jobs.glob("*.json")) - earlier  # the session's state dir holds others
        record = json.loads(made.read_text())
        assert record["record"]["plan"]["request"]["on_ready"] == "keep-overlay"
        window.open_image(str(images[1]))
        banner = window.journal_banner
        qtbot.waitUntil(lambda: not banner.isHidden(), timeout=30_000)
        resumed: list[bool] = []
        banner.resumed.connect(lambda ok, _s, _d: resumed.append(ok))
        banner.rerun_button.click()
        qtbot.waitUntil(lambda: bool(resumed), timeout=120_000)
        assert resumed == [True]
        inserted = [b["inserted"] for b in vm.execute("query-block") if b.get("inserted")]  # type: ignore[union-attr]
        assert inserted and inserted[0]["node-name"] == "top"  # not pivoted
        assert not any(jobs.glob(f"{record['id']}.json"))
