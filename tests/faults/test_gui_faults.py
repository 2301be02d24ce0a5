"""Fault 8: the window under a fault. qemu-img is killed mid-commit: the window stays responsive,
shows the error naming the files, reads the graph again, and the journal banner re-runs the job."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from backchain.ui.main_window import MainWindow
from tests.faults.helpers import Scene, children_of, kill, record
from tests.gui.conftest import window  # noqa: F401  (the one window fixture)
from tests.images import compare


def _commit_child() -> int | None:
    for pid in children_of(os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"qemu-img") and argv[1] == b"commit":
            return pid
    return None


def test_commit_failing_midway_keeps_the_window_responsive_and_rereads_the_graph(
    qtbot: QtBot,
    window: MainWindow,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Kill qemu-img at the first progress; then check the window, the files and the re-run."""
    scene = Scene.build(tmp_path)
    active = os.path.realpath(scene.p("active.qcow2"))
    stages: list[str] = []
    window.graph_shown.connect(stages.append)
    window.open_image(active)
    qtbot.waitUntil(lambda: "extents" in stages, timeout=60_000)
    window.plan_panel.choose_top(os.path.realpath(scene.p("snap2.qcow2")))
    window.plan_panel.rate.setValue(8)
    assert window.plan is not None and window.plan.base == os.path.realpath(scene.base)
    results: list[tuple[bool, str, str]] = []
    window.job_done.connect(lambda ok, summary, details: results.append((ok, summary, details)))
    window.start_job(window.plan)
    qtbot.waitUntil(lambda: any(d > 0 for d, _t, _p in window.progress.events), timeout=60_000)
    child = _commit_child()
    assert child is not None
    stages.clear()
    kill(child)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    ok, summary, details = results[0]
    assert not ok
    assert "snap2.qcow2" in summary and "base.qcow2" in summary and "killed by signal 9" in summary
    assert "may be partly written" in details
    qtbot.waitUntil(lambda: window.failure_box.isVisible(), timeout=10_000)
    qtbot.waitUntil(lambda: "extents" in stages, timeout=60_000)  # the graph was read again
    ticked: list[bool] = []
    QTimer.singleShot(10, lambda: ticked.append(True))
    qtbot.waitUntil(lambda: bool(ticked), timeout=10_000)  # the event loop still runs
    assert not window.jobs.running and window.commit_action.isEnabled()
    lost = scene.active_lost()
    assert lost == 0 and scene.all_clean() == [] and scene.unchanged_outside_plan()

    # The window itself now reports the interrupted job above the graph, and re-runs it.
    banner = window.journal_banner
    qtbot.waitUntil(lambda: not banner.isHidden(), timeout=10_000)
    assert "A commit of snap2.qcow2 into base.qcow2 failed at" in banner.label.text()
    stages.clear()
    with qtbot.waitSignal(banner.resumed, timeout=120_000) as resumed:
        banner.rerun_button.click()
    assert resumed.args is not None and resumed.args[0] is True, resumed.args
    qtbot.waitUntil(lambda: "extents" in stages, timeout=60_000)  # re-read after the re-run
    assert banner.isHidden()
    assert window.graph is not None
    assert window.graph.backing_of(active) == os.path.realpath(scene.base)
    assert compare(scene.base, scene.keep / "snap2-view.qcow2")
    assert scene.active_lost() == 0 and scene.all_clean() == [] and scene.unchanged_outside_plan()
    record("8. GUI under faults", True, lost)
