"""The Commit/Pull switch: the same selection in both directions, the advice's button, a pull run
through the same job panel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot

from backchain.core.model import Operation
from backchain.ui.main_window import MainWindow
from tests.gui.test_commit_job import _run
from tests.images import ChainBuilder, MiB, backing_name, reads


def test_the_switch_plans_the_same_shortening_as_a_pull(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["active.qcow2"])
    window.plan_panel.choose_base(tree["snap1.qcow2"])
    commit = window.plan
    assert commit is not None and commit.operation is Operation.COMMIT
    window.plan_panel.set_direction("pull")
    pull = window.plan
    assert pull is not None and pull.operation is Operation.PULL
    # snap2 and snap1 leave active's chain; base stays: the merge a commit into snap1 makes.
    assert pull.merged == (tree["snap2.qcow2"], tree["snap1.qcow2"])
    assert pull.base == tree["base.qcow2"]
    assert commit.alternative is not None
    assert commit.alternative.bytes_to_copy == pull.bytes_to_copy
    assert "Pull into active.qcow2" in window.preview.summary.text()
    assert "Pull or commit" in window.preview.advice.text()
    assert window.plan_panel.commit_button.text() == "Pull…"


def test_the_advice_button_switches_to_the_advised_direction(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["active.qcow2"])
    window.plan_panel.choose_base(tree["base.qcow2"])
    assert window.plan is not None
    advised = window.preview.advised
    assert not advised.isHidden(), window.preview.advice.text()
    wanted = str(advised.property("operation"))
    assert wanted != window.plan.operation.value
    advised.click()
    assert window.plan is not None and window.plan.operation.value == wanted
    assert window.preview.advised.isHidden()


def test_a_pull_runs_through_the_job_panel(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    paths = ChainBuilder(tmp_path / "pull").chain(["base.qcow2", "snap.qcow2", "active.qcow2"])
    open_and_wait(str(paths[-1]))
    window.plan_panel.set_direction("pull")
    assert window.plan is not None and window.plan.operation is Operation.PULL
    ok, summary, _ = _run(qtbot, window)
    assert ok, summary
    assert [e for e in window.progress.events if e[2] == "pull"]
    assert backing_name(paths[-1]) is None
    for index in range(3):
        assert reads(paths[-1], ChainBuilder.pattern(index), index * MiB, MiB)


def test_the_advice_speaks_of_the_selection_only_and_agrees_with_the_columns(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    """Each merged layer's own rule of thumb ("snap2 alone: commit is faster") once stood under
    the selection's advice and could say the opposite; only the selection's advice is shown."""
    from backchain.core.advice import advise
    from backchain.core.describe import consequences, human_bytes

    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["snap2.qcow2"])
    window.plan_panel.choose_base(tree["base.qcow2"])
    plan = window.plan
    assert plan is not None and len(plan.merged) > 1 and plan.advice
    choice = advise(plan)
    assert choice is not None
    text = window.preview.advice.text()
    assert f"{choice.operation.value.capitalize()} advised" in text
    assert f"commit copies {human_bytes(plan.bytes_to_copy)}" in text
    assert "is faster" not in text and "allocated)" not in text
    words = consequences(plan)
    assert sum("advised" in line for line in words) == 1
    assert not any("copies fewer bytes (commit" in line for line in words)
