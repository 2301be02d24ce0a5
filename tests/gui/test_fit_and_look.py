"""The window fits the screen whatever it shows, and its colours come from the palette."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from backchain.core.model import Role
from backchain.ui.banners import Tone, banner_colours
from backchain.ui.elide import distinct_names
from backchain.ui.main_window import MainWindow
from backchain.ui.roles import STYLES, contrast, dark_palette, readable, selection_colour
from tests.images import ChainBuilder, MiB, write


def _assert_fits(window: MainWindow) -> None:
    room = window.screen().availableGeometry()
    frame = window.frameGeometry()
    assert frame.width() <= room.width() and frame.height() <= room.height(), (frame, room)
    hint = window.minimumSizeHint()
    assert hint.width() <= room.width() and hint.height() <= room.height(), (hint, room)


def test_the_window_never_grows_past_the_screen_with_long_texts_and_30_layers(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    names = [f"prod-webserver-2024-{i:02d}-15-pre-update-layer.qcow2" for i in range(30)]
    paths = ChainBuilder(tmp_path / ("a-rather-long-folder-name-" * 4)).chain(names, data=False)
    for index, path in enumerate(paths[1:], start=1):
        write(path, 0x10 + index, index * MiB, MiB)  # every layer has data: 29 advice lines
    active = os.path.realpath(paths[-1])
    window.resize(4000, 3000)  # a restored geometry from a bigger monitor
    assert open_and_wait(active) == "extents"
    assert window.plan is not None and len(window.plan.advice) == 29
    _assert_fits(window)
    # A long refusal in the job status, and a long planner message.
    refusal = f"{active} is being changed by another Backchain process 1 ({'x' * 400})"
    window.progress.job_finished(False, refusal)
    window.plan_panel.choose_top(str(paths[3]))
    window.plan_panel.choose_base(str(paths[5]))
    assert window.plan_panel.message.isVisible()
    qtbot.wait(50)
    _assert_fits(window)
    # The Top/Base fields keep their height beside the message.
    combo = window.plan_panel.top_combo
    assert combo.height() >= combo.minimumSizeHint().height()
    # The 30 layers fit the view on open: the graph is zoomed out, not cut.
    view = window.view
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(view.scene().itemsBoundingRect())


def test_long_names_keep_the_part_that_tells_them_apart(
    window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    names = [f"prod-webserver-2024-{m}-security-update.qcow2" for m in ("01-15", "02-03")]
    paths = ChainBuilder(tmp_path / "img").chain(names, data=False)
    open_and_wait(os.path.realpath(paths[-1]))
    shown = {item.display_name for item in window.view.nodes.values()}
    assert any("01-15" in name for name in shown) and any("02-03" in name for name in shown)
    assert all(len(name) <= 26 for name in shown)
    combo = window.plan_panel.top_combo
    texts = [combo.itemText(i) for i in range(1, combo.count())]
    assert any("01-15" in t for t in texts) and any("02-03" in t for t in texts)


def test_banners_outline_and_refusal_colours_come_from_a_dark_palette(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    light = app.palette()
    try:
        app.setPalette(dark_palette())
        dark = dark_palette()
        open_and_wait(tree["active.qcow2"])
        text = dark.color(QPalette.ColorRole.Text)
        for tone in (Tone.WARNING, Tone.NEWS):
            background, words, _border = banner_colours(tone, dark)
            assert background.lightness() < 100 and contrast(words, background) >= 7.0
        sheet = window.journal_banner.styleSheet()
        background, _words, _border = banner_colours(Tone.WARNING, dark)
        assert background.name() in sheet and text.name() in sheet
        error_bg, error_text, _ = banner_colours(Tone.ERROR, dark)
        assert contrast(error_text, error_bg) >= 4.5
        # The top/base outline is the palette's text colour: strong on dark cards.
        assert selection_colour(dark) == text
        assert contrast(selection_colour(dark), dark.color(QPalette.ColorRole.Base)) >= 7.0
        # The planner's refusal is readable text on the dark window (WCAG 4.5:1).
        refusal = readable(QColor(STYLES[Role.DELETED].colour), dark)
        assert contrast(refusal, dark.color(QPalette.ColorRole.Window)) >= 4.5
        window.plan_panel.choose_top(tree["snap1.qcow2"])
        window.plan_panel.choose_base(tree["snap2.qcow2"])
        assert refusal.name() in window.plan_panel.message.styleSheet()
        assert QColor(refusal.name()).lightness() > QColor("#C0182A").lightness()
    finally:
        app.setPalette(light)


def test_eliding_keeps_what_differs_and_cuts_no_word_in_half() -> None:
    names = [f"prod-webserver-2024-{m}-pre-update.qcow2" for m in ("01-15", "02-03")]
    assert distinct_names([*names, "base.qcow2"]) == [
        "prod…01-15…-update.qcow2",
        "prod…02-03…-update.qcow2",
        "base.qcow2",
    ]
    assert distinct_names(["short.qcow2", "other.qcow2"]) == ["short.qcow2", "other.qcow2"]
