"""The preview's two columns, Commit | Pull: both real plans side by side, figures equal to the
CLI's own plans of each direction, and a click on the other column runs that very plan."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from backchain.core.advice import advise
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitRequest, Operation
from backchain.engines.registry import make_plan
from backchain.ui.direction_compare import DirectionColumn
from backchain.ui.direction_figures import Side, Sides
from backchain.ui.main_window import MainWindow
from backchain.ui.preview_panel import PreviewPanel
from backchain.ui.text import human_bytes
from tests.gui.test_commit_job import _run
from tests.images import ChainBuilder, MiB, backing_name, checksums, compare, snapshot_copy
from tests.images import backchain as cli
from tests.unit.test_plan import layer


def _plan_json(*args: str) -> dict[str, Any] | None:
    """``backchain plan ... --json`` in a child process; None when it is refused (exit 2)."""
    result = cli("plan", *args, "--json")
    if result.returncode == 2:
        return None
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _risk(document: dict[str, Any]) -> tuple[list[str], int]:
    """The images that read changed data (bytes above zero), and the sum of their bytes."""
    items = [a for a in document["at_risk"] if a["bytes"] != 0]
    return sorted(a["image"] for a in items), sum(a["bytes"] for a in items)


def _assert_column_is(
    column: DirectionColumn, document: dict[str, Any], deletable: list[str]
) -> None:
    """The column shows the CLI plan's figures: bytes, exactness, at risk, deletable."""
    found = column.figures
    assert found is not None, column.row_text("copy")
    assert found.bytes_to_copy == document["bytes_to_copy"]
    assert found.exact == document["bytes_to_copy_exact"]
    images, total = _risk(document)
    assert sorted(a.image for a in found.at_risk) == images
    assert found.risk_bytes == total
    assert list(found.deletable) == deletable
    assert human_bytes(document["bytes_to_copy"]) in column.row_text("copy")
    if images:
        plural = "s" if len(images) != 1 else ""
        assert column.row_text("risk") == f"{len(images)} image{plural}, {human_bytes(total)}"
        for image in images:
            assert os.path.basename(image) in column.rows["risk"].toolTip()
    else:
        assert column.row_text("risk") == "none"
    for path in deletable:
        assert os.path.basename(path) in column.row_text("deletable")


SELECTIONS = [
    # (top, the lower layer the selection bounds); None: the default
    ("active.qcow2", "snap1.qcow2"),
    ("active.qcow2", "base.qcow2"),
    ("snap2.qcow2", "snap1.qcow2"),
    ("active.qcow2", "snap2.qcow2"),
]


@pytest.mark.parametrize(("top", "lower"), SELECTIONS)
def test_both_columns_equal_the_cli_plans_of_each_direction(
    qtbot: QtBot,
    window: MainWindow,
    tree: dict[str, str],
    open_and_wait: Callable[[str], str],
    top: str,
    lower: str,
) -> None:
    image = tree["active.qcow2"]
    open_and_wait(image)
    window.plan_panel.choose_top(tree[top])
    window.plan_panel.choose_base(tree[lower])
    compare_widget = window.preview.compare
    assert compare_widget.isVisible()
    commit_column = compare_widget.column(Operation.COMMIT)
    pull_column = compare_widget.column(Operation.PULL)
    assert commit_column.selected and not pull_column.selected

    # Each direction planned independently by the command line.
    commit_doc = _plan_json(image, "--top", tree[top], "--base", tree[lower])
    with_delete = _plan_json(image, "--top", tree[top], "--base", tree[lower], "--delete")
    pull_base = window.graph.backing_of(tree[lower])  # type: ignore[union-attr]
    pull_args = ["--base", pull_base] if pull_base else []
    pull_doc = _plan_json(image, "--pull", "--top", tree[top], *pull_args)
    assert commit_doc is not None and pull_doc is not None
    _assert_column_is(commit_column, commit_doc, with_delete["deleted"] if with_delete else [])
    _assert_column_is(pull_column, pull_doc, pull_doc["deletable"])
    assert pull_column.row_text("risk") == "none"
    # The advice's figures (the plan's "alternative") agree with the other column's real plan.
    assert commit_doc["alternative"]["bytes_to_copy"] == pull_doc["bytes_to_copy"]
    assert pull_doc["alternative"]["bytes_to_copy"] == commit_doc["bytes_to_copy"]
    assert pull_doc["alternative"]["at_risk"] == [
        {"image": a["image"], "bytes": a["bytes"]} for a in commit_doc["at_risk"]
    ]

    # Switched, the same two plans show, the other way round.
    window.plan_panel.set_direction("pull")
    assert pull_column.selected and not commit_column.selected
    _assert_column_is(pull_column, pull_doc, pull_doc["deletable"])
    _assert_column_is(commit_column, commit_doc, with_delete["deleted"] if with_delete else [])


def test_clicking_the_other_column_switches_and_the_worker_runs_that_very_plan(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["active.qcow2"])
    window.plan_panel.choose_base(tree["snap1.qcow2"])
    pull_column = window.preview.compare.column(Operation.PULL)
    shown = pull_column.side.plan if pull_column.side else None
    assert shown is not None and shown.operation is Operation.PULL
    active = Path(tree["active.qcow2"])
    before = snapshot_copy(active, active.parent.parent / "active-before.qcow2")
    others = [Path(tree[n]) for n in ("base.qcow2", "snap1.qcow2", "snap2.qcow2", "other.qcow2")]
    sums = checksums(others)

    qtbot.mouseClick(pull_column, Qt.MouseButton.LeftButton)
    assert window.plan_panel.operation() is Operation.PULL
    assert window.plan is shown  # the column's own object, not a re-plan
    assert window.preview.compare.column(Operation.PULL).selected
    ok, summary, _ = _run(qtbot, window)
    assert ok, summary
    assert window.job_panel.last_plan is shown
    assert backing_name(active) == "base.qcow2"
    assert compare(active, before)
    assert checksums(others) == sums


def test_with_shallow_the_pull_column_names_shallows_base_and_the_switch_keeps_it(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.shallow.setChecked(True)  # active into snap2
    assert window.plan is not None and window.plan.base == tree["snap2.qcow2"]
    pull_column = window.preview.compare.column(Operation.PULL)
    shown = pull_column.side.plan if pull_column.side else None
    # The same shortening: snap2 leaves active's chain, which stays on snap1.
    assert shown is not None and shown.merged == (tree["snap2.qcow2"],)
    assert shown.base == tree["snap1.qcow2"]
    pull_column.setFocus()
    qtbot.keyClick(pull_column, Qt.Key.Key_Space)
    assert window.plan is shown
    assert not window.plan_panel.shallow.isChecked()
    assert window.plan_panel.base() == tree["snap2.qcow2"]
    window.plan_panel.set_direction("commit")
    assert window.plan is not None and window.plan.base == tree["snap2.qcow2"]


def test_a_refused_other_direction_says_why_instead_of_figures(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    builder = ChainBuilder(tmp_path / "branch")
    base, snap, active = builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"])
    builder.overlay("branch.qcow2", snap)  # keeps snap alive: a commit may not delete it
    open_and_wait(str(active))
    window.plan_panel.delete.setChecked(True)
    window.plan_panel.choose_base(os.path.realpath(base))  # merges snap, which branch uses
    window.plan_panel.set_direction("pull")
    assert window.plan is not None and window.plan.operation is Operation.PULL
    commit_column = window.preview.compare.column(Operation.COMMIT)
    assert commit_column.figures is None
    refusal = _plan_json(str(active), "--base", os.path.realpath(base), "--delete")
    assert refusal is None  # the CLI refuses the same commit
    text = commit_column.row_text("copy")
    assert text.startswith("Refused:") and "branch.qcow2" in text
    assert not commit_column.rows["copy"].isVisibleTo(commit_column)
    pull_column = window.preview.compare.column(Operation.PULL)
    assert pull_column.figures is not None
    # Without DELETE the same selection commits: the column shows figures again.
    window.plan_panel.delete.setChecked(False)
    assert commit_column.figures is not None
    assert commit_column.figures.deletable == ()
    assert commit_column.side is not None and commit_column.side.delete_refusal
    assert "branch.qcow2" in commit_column.rows["deletable"].toolTip()


def test_the_advice_button_is_disabled_when_the_advised_direction_is_refused(
    qtbot: QtBot,
) -> None:
    """A pull advised where the engine refuses it (libvirt streams into the active layer only):
    the button says why instead of switching to a refusal; the column shows that refusal."""
    graph = ImageGraph([layer("base", None, (0, 100)), layer("active", "base", (0, 90))])
    commit = make_plan(graph, CommitRequest(image="/img/active"))
    choice = advise(commit)
    assert choice is not None and choice.operation is Operation.PULL  # 90 MiB against 10 MiB
    refusal = "a pull streams into the active layer 'vda[1]' only; 'vda[2]' is not the active layer"
    sides = Sides(
        Operation.COMMIT,
        Side(Operation.COMMIT, commit.request, commit, None),
        Side(Operation.PULL, None, None, refusal),
        graph,
    )
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.show_plan(commit, None, sides)
    assert not panel.advised.isHidden() and not panel.advised.isEnabled()
    assert refusal in panel.advised.toolTip()
    pull_column = panel.compare.column(Operation.PULL)
    assert pull_column.figures is None and pull_column.row_text("copy").startswith("Refused:")
    commit_column = panel.compare.column(Operation.COMMIT)
    assert commit_column.figures is not None and commit_column.figures.bytes_to_copy == 90 * MiB
