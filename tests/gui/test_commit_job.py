"""A commit run from the window: progress, the graph read again, the data, cancel, failure."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot

from backchain.ui.main_window import MainWindow
from tests.gui.conftest import answer
from tests.images import ChainBuilder, MiB, reads, write


def _run(qtbot: QtBot, window: MainWindow) -> tuple[bool, str, list[str]]:
    """Start the plan on screen (the very object shown), wait for the end and the re-read."""
    assert window.plan is not None
    stages: list[str] = []
    results: list[tuple[bool, str, str]] = []
    window.job_done.connect(lambda ok, summary, details: results.append((ok, summary, details)))
    window.job_done.connect(lambda *_: stages.clear())
    window.graph_shown.connect(stages.append)
    window.start_job(window.plan)
    qtbot.waitUntil(lambda: bool(results) and "extents" in stages, timeout=60_000)
    ok, summary, _details = results[0]
    return ok, summary, stages


def test_commit_streams_progress_rereads_the_graph_and_keeps_the_data(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    window.plan_panel.choose_top(tree["snap2.qcow2"])
    window.plan_panel.choose_base(tree["base.qcow2"])
    planned = window.plan
    assert planned is not None and planned.top == tree["snap2.qcow2"]
    ok, summary, _ = _run(qtbot, window)
    progress = window.progress.events  # what the worker's progressed signal delivered
    assert ok, summary
    commit = [event for event in progress if event[2] == "commit"]
    assert commit and commit[-1][0] == commit[-1][1]
    assert [e[2] for e in progress].index("rebase") > [e[2] for e in progress].index("commit")
    assert window.progress.bar.value() == 1000
    assert "qemu-img commit" in window.progress.log.toPlainText()
    # The graph was read again: active now backs onto base directly.
    graph = window.graph
    assert graph is not None and graph.backing_of(tree["active.qcow2"]) == tree["base.qcow2"]
    assert window.view.nodes[tree["active.qcow2"]].layer.backing_name == "base.qcow2"
    # Through the new chain the active layer still reads every layer's pattern.
    active = Path(tree["active.qcow2"])
    for index in range(4):
        assert reads(active, ChainBuilder.pattern(index), index * MiB, MiB)
    # other.qcow2 was at risk, and now reads snap1's data through base, as the preview said.
    assert reads(Path(tree["other.qcow2"]), ChainBuilder.pattern(1), MiB, MiB)


def test_cancel_stops_a_slow_commit_and_leaves_the_chain_readable(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, open_and_wait: Callable[[str], str]
) -> None:
    builder = ChainBuilder(tmp_path / "slow")
    paths = builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"], data=False)
    write(paths[1], 0x22, 0, 24 * MiB)  # 24 MiB at 1 MiB/s: far longer than the test waits
    write(paths[2], 0x33, 30 * MiB, MiB)
    active = os.path.realpath(paths[2])
    open_and_wait(active)
    window.plan_panel.choose_top(os.path.realpath(paths[1]))
    window.plan_panel.rate.setValue(1)
    assert window.plan is not None and "-r" in window.plan.steps[0].argv
    results: list[tuple[bool, str]] = []
    window.job_done.connect(lambda ok, summary, _d: results.append((ok, summary)))
    worker = window.start_job(window.plan)
    assert window.progress.cancel_button.isEnabled()
    # Cancel on the first progress event: deterministic, no sleeping.
    first: list[int] = []
    worker.progressed.connect(lambda done, _t, _p: first.append(done))
    qtbot.waitUntil(lambda: bool(first), timeout=30_000)
    window.progress.cancel_button.click()
    box = answer(qtbot, "Cancel the commit?", "Cancel the commit")
    assert "base.qcow2 is left partly written" in box.informativeText()
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    ok, summary = results[0]
    assert not ok and summary.startswith("Cancelled")
    assert not window.jobs.running
    # The user's own Cancel is not a red "Commit failed" dialog.
    assert window.failure_box is None
    assert window.progress.bar.format() == "cancelled"
    # Top and its overlay still read correctly after a cancelled commit.
    assert reads(Path(active), 0x22, 0, 24 * MiB)
    assert reads(Path(active), 0x33, 30 * MiB, MiB)


def test_a_failed_start_shows_the_summary_and_details(
    qtbot: QtBot, window: MainWindow, tree: dict[str, str], open_and_wait: Callable[[str], str]
) -> None:
    open_and_wait(tree["active.qcow2"])
    assert window.plan is not None
    # The disk changes after the plan was made: the runner refuses, and the window says why.
    os.rename(tree["snap1.qcow2"], tree["snap1.qcow2"] + ".moved")
    results: list[tuple[bool, str, str]] = []
    window.job_done.connect(lambda ok, s, d: results.append((ok, s, d)))
    window.start_job(window.plan)
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    assert results[0][0] is False
    box = window.failure_box
    assert box is not None and box.isVisible()
    assert "snap1.qcow2" in box.text()
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=30_000)
    assert "snap1.qcow2" in window.banner.text()
