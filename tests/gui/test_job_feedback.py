"""What the window says while and after a job runs: failure dialog, crash dialog, confirmation,
progress wording, and the palette it paints with."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPointF, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from backchain.core.model import Role
from backchain.ui import crash
from backchain.ui.main_window import MainWindow
from backchain.ui.node_item import NODE_HEIGHT, NODE_WIDTH
from backchain.ui.progress_panel import describe_progress
from backchain.ui.roles import (
    LEGEND_ORDER,
    STYLES,
    border_colour,
    contrast,
    dark_palette,
    fill_colour,
    text_on,
)
from tests.images import ChainBuilder, MiB, reads


@pytest.fixture
def immutable() -> Iterator[Callable[[str], None]]:
    """chattr +i on files (even root cannot write them then); undone after the test."""
    marked: list[str] = []

    def mark(path: str) -> None:
        subprocess.run(["chattr", "+i", path], check=True)
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", path], check=False)


def test_a_qemu_img_step_that_fails_shows_the_failure_and_rereads_the_graph(
    qtbot: QtBot,
    window: MainWindow,
    tree: dict[str, str],
    open_and_wait: Callable[[str], str],
    immutable: Callable[[str], None],
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["snap2.qcow2"])
    window.plan_panel.choose_base(tree["base.qcow2"])
    window.plan_panel.rate.setValue(2)  # a few seconds, so the next step can change under it
    plan = window.plan
    assert plan is not None and [s.kind for s in plan.steps] == ["commit", "rebase"]
    before = Path(tree["active.qcow2"]).read_bytes()
    results: list[tuple[bool, str, str]] = []
    stages: list[str] = []
    window.job_done.connect(lambda ok, s, d: results.append((ok, s, d)))
    window.job_done.connect(lambda *_: window.graph_shown.connect(stages.append))
    window.start_job(plan)
    # While the commit runs, active.qcow2 becomes immutable (checks before the job passed):
    # the commit finishes, then the real `qemu-img rebase` of active.qcow2 fails with EPERM.
    qtbot.waitUntil(lambda: any(d > 0 for d, _t, _p in window.progress.events), timeout=30_000)
    immutable(tree["active.qcow2"])
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    ok, summary, details = results[0]
    assert not ok
    box = window.failure_box
    assert box is not None and box.isVisible()
    assert box.windowTitle() == "Commit failed"
    assert box.text() == summary
    assert summary.startswith("re-pointing active.qcow2 to base.qcow2 failed: ")
    assert "Operation not permitted" in summary
    text = box.detailedText()
    assert text == details
    assert "command: qemu-img rebase " in text and "active.qcow2" in text
    assert "exit status: 1" in text
    assert "output:\n" in text and "Operation not permitted" in text.split("output:")[1]
    assert "state of the files:" in text
    assert Path(tree["active.qcow2"]).read_bytes() == before
    # The window stays responsive and reads the graph again behind the dialog.
    qtbot.waitUntil(lambda: "extents" in stages, timeout=30_000)
    ticked: list[bool] = []
    QTimer.singleShot(0, lambda: ticked.append(True))
    qtbot.waitUntil(lambda: bool(ticked), timeout=5_000)
    assert not window.jobs.running
    assert window.progress.bar.format() == "stopped"
    assert "== failed: re-pointing active.qcow2" in window.progress.log.toPlainText()
    window.plan_panel.shallow.setChecked(True)  # the controls still work, and re-plan
    assert "is not immediately below" in window.plan_panel.planner_text()
    window.plan_panel.shallow.setChecked(False)
    # The graph read again knows active.qcow2 cannot be written now: the planner says so.
    assert window.plan is None
    assert window.plan_panel.planner_text() == (
        f"'{tree['active.qcow2']}' is not writable, so the commit cannot change it"
    )
    assert window.plan_panel.message.text().startswith("active.qcow2 is not writable")
    box.close()
    # The commit itself happened: base now holds snap2's and snap1's data.
    assert reads(Path(tree["base.qcow2"]), ChainBuilder.pattern(2), 2 * MiB, MiB)


@pytest.mark.qt_no_exception_capture
def test_an_uncaught_exception_in_a_slot_writes_a_crash_log_and_shows_the_dialog(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("BACKCHAIN_STATE_DIR", str(state))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(crash, "last_dialog", None)
    crash.install()

    def broken_slot() -> None:
        raise RuntimeError("boom in a slot")

    window.plan_panel.changed.connect(broken_slot)
    window.plan_panel.delete.setChecked(True)  # emits changed: the slot raises
    qtbot.waitUntil(lambda: crash.last_dialog is not None and crash.last_dialog.isVisible())
    dialog = crash.last_dialog
    assert dialog is not None
    logs = sorted((state / "crashes").glob("crash-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "RuntimeError: boom in a slot" in text and "broken_slot" in text
    assert str(logs[0]) in dialog.informativeText()
    assert "RuntimeError: boom in a slot" in dialog.detailedText()
    dialog.close()
    window.plan_panel.changed.disconnect(broken_slot)
    window.plan_panel.delete.setChecked(False)  # the window goes on working
    assert window.plan_panel.delete.isChecked() is False


def test_the_confirmation_from_the_commit_button_lists_every_destructive_effect(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    panel = window.plan_panel
    panel.choose_top(tree["snap2.qcow2"])
    panel.choose_base(tree["base.qcow2"])
    panel.delete.setChecked(True)
    plan = window.plan
    assert plan is not None and set(plan.deleted) == {tree["snap2.qcow2"], tree["snap1.qcow2"]}
    before = {p: Path(p).read_bytes() for p in tree.values()}
    seen: list[tuple[str, str, str, bool]] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        cancel = box.button(QMessageBox.StandardButton.Cancel)
        seen.append(
            (box.text(), box.informativeText(), box.detailedText(), box.defaultButton() is cancel)
        )
        cancel.click()

    QTimer.singleShot(50, answer)
    panel.commit_button.click()
    assert seen, "no confirmation was shown"
    title, effects, script, cancel_first = seen[0]
    assert title == "Commit snap2.qcow2 into base.qcow2?"
    assert "<b>Deleted:</b> snap2.qcow2, snap1.qcow2." in effects
    assert "<b>At risk:</b> other.qcow2 (" in effects and "would read changed data" in effects
    assert "Re-pointed to base: active.qcow2." in effects
    assert "<b>base.qcow2</b> is written" in effects
    assert cancel_first  # bytes are at risk
    assert f"rm -f -- {tree['snap2.qcow2']}" in script
    assert not window.jobs.running
    assert {p: Path(p).read_bytes() for p in tree.values()} == before

    # Without DELETE, the layers in between become invalid at once: listed by name too.
    panel.delete.setChecked(False)
    panel.choose_top(tree["active.qcow2"])
    seen.clear()
    QTimer.singleShot(50, answer)
    panel.commit_button.click()
    assert "<b>Invalid at once:</b> snap2.qcow2, snap1.qcow2." in seen[0][1]


def test_progress_wording_bytes_for_the_commit_counts_and_percent_for_the_rest() -> None:
    plan_bytes = 12 * MiB
    bar, status = describe_progress(3 * MiB, plan_bytes, "commit", 1.5, plan_bytes)
    assert bar == "Committing: 25.0%"
    assert status == "Committing · 3.0 MiB of 12.0 MiB · 2.0 MiB/s · about 4 s left"
    # Too early for a rate, and finished: no throughput, no time left.
    assert describe_progress(MiB, plan_bytes, "commit", 0.05, plan_bytes)[1] == (
        "Committing · 1.0 MiB of 12.0 MiB"
    )
    assert "left" not in describe_progress(plan_bytes, plan_bytes, "commit", 6, plan_bytes)[1]
    # A commit with nothing to copy is scaled to 100 by the runner: a percentage, not bytes.
    assert describe_progress(40, 100, "commit", 1, 0)[1] == "Committing · 40%"
    # QMP jobs report their own byte total, which need not match the plan's estimate.
    assert "MiB/s" in describe_progress(2 * MiB, 8 * MiB, "commit", 1, 5 * MiB)[1]
    assert describe_progress(1, 2, "rebase", 3, plan_bytes) == (
        "Re-pointing overlays: 50.0%",
        "Re-pointing overlays · 1 of 2 images",
    )
    assert describe_progress(1, 1, "delete", 3, plan_bytes)[1] == "Deleting · 1 of 1 file"
    assert describe_progress(50, 100, "verify", 3, plan_bytes)[1] == "Verifying · 50%"


def test_a_real_commit_shows_throughput_only_while_bytes_are_copied(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    panel = window.plan_panel
    panel.choose_top(tree["snap2.qcow2"])
    panel.choose_base(tree["snap1.qcow2"])
    panel.delete.setChecked(True)  # commit, rebase, verify, delete: every phase
    panel.rate.setValue(1)  # 3 MiB at 1 MiB/s: several reports with a rate
    assert window.plan is not None
    results: list[bool] = []
    window.job_done.connect(lambda ok, _s, _d: results.append(ok))
    window.start_job(window.plan)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    assert results == [True]
    statuses = window.progress.statuses
    phases = {status.split(" · ")[0] for status in statuses}
    assert {"Committing", "Re-pointing overlays", "Verifying", "Deleting"} <= phases
    committing = [s for s in statuses if s.startswith("Committing")]
    assert any("MiB/s" in s and "left" in s for s in committing), "|".join(committing)
    assert all(" of 3.0 MiB" in s for s in committing), committing
    others = [s for s in statuses if not s.startswith("Committing")]
    assert others and not any("/s" in s or "MiB" in s for s in others), others
    assert "Re-pointing overlays · 1 of 1 image" in others
    assert "Deleting · 1 of 1 file" in others


def _card_pixel(window: MainWindow, path: str) -> QColor:
    """The colour of a node's card in an empty corner, as painted on screen."""
    view = window.view
    item = view.nodes[path]
    view.ensureVisible(item)
    point = view.mapFromScene(item.mapToScene(QPointF(NODE_WIDTH - 10, NODE_HEIGHT - 8)))
    image = view.viewport().grab().toImage()
    ratio = image.devicePixelRatio()
    return image.pixelColor(round(point.x() * ratio), round(point.y() * ratio))


def test_node_colours_and_text_stay_readable_in_light_and_dark_palettes() -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    for palette in (app.palette(), dark_palette()):
        text = palette.color(QPalette.ColorRole.Text)
        base = palette.color(QPalette.ColorRole.Base)
        for role in LEGEND_ORDER:
            assert contrast(text, fill_colour(role, palette)) >= 7.0, role
            pill = QColor(STYLES[role].colour)
            assert contrast(text_on(pill), pill) >= 4.5, role
            if role is not Role.UNTOUCHED:
                assert contrast(border_colour(role, palette), base) >= 3.0, role
        for badge in ("#56B4E9", "#D55E00", "#6B6B6B", palette.color(QPalette.ColorRole.Highlight)):
            colour = QColor(badge)
            assert contrast(text_on(colour), colour) >= 4.5, badge


def test_the_window_follows_a_dark_palette(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    open_and_wait(tree["active.qcow2"])
    light = app.palette()
    untouched = tree["other.qcow2"]
    window.plan_panel.shallow.setChecked(True)  # other.qcow2 untouched, snap2 is base
    assert window.view.role_of(untouched) is Role.UNTOUCHED
    assert _card_pixel(window, untouched).lightness() > 200
    try:
        app.setPalette(dark_palette())
        qtbot.waitUntil(lambda: window.palette().color(QPalette.ColorRole.Window).lightness() < 80)
        qtbot.waitUntil(lambda: _card_pixel(window, untouched).lightness() < 60, timeout=5_000)
        dark = dark_palette()
        base_card = _card_pixel(window, tree["snap2.qcow2"])
        expected = fill_colour(Role.BASE, dark)
        assert abs(base_card.red() - expected.red()) <= 3
        assert abs(base_card.green() - expected.green()) <= 3
        assert contrast(dark.color(QPalette.ColorRole.Text), base_card) >= 7.0
        assert window.preview.palette().color(QPalette.ColorRole.Base).lightness() < 60
    finally:
        app.setPalette(light)
    qtbot.waitUntil(lambda: _card_pixel(window, untouched).lightness() > 200, timeout=5_000)
