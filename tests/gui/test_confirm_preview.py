"""The confirmation says what the preview found: view changes, losses and lower bounds."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from backchain.core.model import CommitRequest
from backchain.engines.files.scan import open_graph
from backchain.engines.registry import make_plan
from backchain.ui.confirm import build_confirmation
from tests.images import MiB, create, run, write


def test_a_view_change_and_lost_snapshots_make_cancel_the_default(
    qtbot: QtBot, tmp_path: Path
) -> None:
    base = create(tmp_path / "base.qcow2", "2M")
    write(base, 0x11, 0, 2 * MiB)
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    run(["qemu-img", "resize", "-q", "--shrink", str(mid), "1M"])
    run(["qemu-img", "snapshot", "-c", "kept-for-years", str(mid)])
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    run(["qemu-img", "resize", "-q", str(top), "2M"])
    plan = make_plan(open_graph(str(top)), CommitRequest(str(top), top=str(mid), delete=True))
    assert plan.view_changes and plan.lost and not plan.at_risk
    box = build_confirmation(plan)
    qtbot.addWidget(box)
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    text = box.informativeText()
    assert "View changes" in text and "top.qcow2: its view changes by 1.0 MiB" in text
    assert "kept-for-years" in text
