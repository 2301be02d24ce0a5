"""The parts on their own: the layered layout, the crash log, the job worker's signals."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from backchain.core.graph import ImageGraph, Layer
from backchain.ui import crash
from backchain.ui.chain_view import ChainView
from backchain.ui.graph_layout import layout


def _layer(name: str, backing: str | None) -> Layer:
    return Layer(
        path=f"/img/{name}",
        format="qcow2",
        virtual_size=1 << 26,
        backing_name=backing,
        backing_format="qcow2" if backing else None,
        backing_path=f"/img/{backing}" if backing else None,
    )


def test_layout_puts_bottoms_low_the_focus_chain_in_one_column_and_branches_beside() -> None:
    graph = ImageGraph(
        [
            _layer("base", None),
            _layer("snap1", "base"),
            _layer("snap2", "snap1"),
            _layer("active", "snap2"),
            _layer("other", "base"),
            _layer("branch", "snap1"),
        ]
    )
    slots = layout(graph, "/img/active")
    assert [slots[f"/img/{n}"].row for n in ("base", "snap1", "snap2", "active")] == [0, 1, 2, 3]
    assert {slots[f"/img/{n}"].column for n in ("base", "snap1", "snap2", "active")} == {0}
    assert slots["/img/branch"].row == 2 and slots["/img/other"].row == 1
    assert slots["/img/branch"].column > 0 and slots["/img/other"].column > 0
    assert len(set(slots.values())) == len(slots)  # no two cards on one spot


def test_without_a_focus_the_tallest_branch_stays_in_its_parents_column() -> None:
    graph = ImageGraph(
        [
            _layer("base", None),
            _layer("a-short", "base"),
            _layer("b-tall", "base"),
            _layer("b-tall-2", "b-tall"),
            _layer("b-tall-3", "b-tall-2"),
            _layer("c-mid", "base"),
            _layer("c-mid-2", "c-mid"),
        ]
    )
    slots = layout(graph)
    assert [slots[f"/img/{n}"].column for n in ("base", "b-tall", "b-tall-2", "b-tall-3")] == [
        0
    ] * 4
    # Then by height: the two-layer branch comes before the one-layer one.
    assert 0 < slots["/img/c-mid"].column < slots["/img/a-short"].column
    assert slots["/img/c-mid-2"].column == slots["/img/c-mid"].column


def test_a_200_layer_chain_lays_out_and_draws_without_recursion_limits(qtbot: QtBot) -> None:
    layers = [_layer("l0", None)] + [_layer(f"l{i}", f"l{i - 1}") for i in range(1, 200)]
    graph = ImageGraph(layers)
    slots = layout(graph, "/img/l199")
    assert slots["/img/l199"].row == 199
    view = ChainView()
    qtbot.addWidget(view)
    view.set_graph(graph, "/img/l199")
    view.show()
    assert len(view.nodes) == 200
    assert not view.grab().isNull()


def test_an_uncaught_exception_writes_a_crash_log_under_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKCHAIN_STATE_DIR", str(tmp_path))
    try:
        raise ValueError("boom in a slot")
    except ValueError as error:
        path = crash.write_crash_log(error)
    assert path.startswith(str(tmp_path))
    text = Path(path).read_text()
    assert "ValueError: boom in a slot" in text and "PySide6" in text
    assert os.path.dirname(path) == crash.crash_dir()


def test_a_long_session_of_void_qt_calls_keeps_none_alive(qtbot: QtBot) -> None:
    # PySide6 6.12.0 on Python 3.11 drops a reference to None on every void call (QPainter.setPen,
    # setObjectName, ...), and a few seconds of painting then abort the interpreter. pyproject.toml
    # excludes that release; this proves the installed one keeps None's count steady.
    view = ChainView()
    qtbot.addWidget(view)
    before = sys.getrefcount(None)
    for _ in range(20_000):
        view.setObjectName("chainView")
    assert abs(sys.getrefcount(None) - before) < 1_000
    assert view.objectName() == "chainView"


def test_libvirt_indexes_stand_beside_the_file_names(qtbot: QtBot) -> None:
    from backchain.core.valueclass import replace
    from backchain.ui.node_item import layer_tooltip
    from backchain.ui.plan_panel import PlanPanel

    labelled = [
        replace(layer, extra={"label": f"vda[{index}]", "disk": "vda"})
        for index, layer in enumerate([_layer("active", "snap"), _layer("snap", "base"),
                                       _layer("base", None)])
    ]  # fmt: skip
    graph = ImageGraph(labelled)
    panel = PlanPanel()
    qtbot.addWidget(panel)
    panel.set_graph(graph, labelled[0].path)
    texts = [panel.top_combo.itemText(i) for i in range(panel.top_combo.count())]
    assert "snap  (vda[1])" in texts, texts
    assert "vda[2]" in layer_tooltip(labelled[2], active=False)
