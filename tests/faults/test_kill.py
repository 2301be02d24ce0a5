"""Fault 1: SIGKILL of backchain, of its qemu-img child, or both, at 20 points of an offline commit.

Points inside the copy are reached with --rate and the journal's progress; points at step
boundaries use the runner's BACKCHAIN_FAULT_PAUSE seam (see engines/runner.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.helpers import (
    COMMIT_SNAP2_DELETE,
    Scene,
    children_of,
    kill,
    kill_victim,
    record,
    wait_for,
    wait_gone,
)

POINTS = (
    [("backchain", pct) for pct in (5, 20, 35, 50, 65, 80, 95)]
    + [("qemu-img", pct) for pct in (10, 25, 45, 60, 75, 90)]
    + [("both", pct) for pct in (40, 85)]
    + [
        ("backchain", pause)
        for pause in (
            "before:commit",
            "after:commit",
            "after:rebase",
            "after:verify",
            "after:delete",
        )
    ]
)
assert len(POINTS) == 20


def _reached(scene: Scene, percent: int) -> bool:
    jobs = scene.jobs()
    if not jobs:
        return False
    job = jobs[0]
    return bool(job["done"] or (job["current"] == 0 and float(job["fraction"]) * 100 >= percent))


@pytest.mark.slow
@pytest.mark.parametrize(("victim", "point"), POINTS, ids=[f"{v}-{p}" for v, p in POINTS])
def test_sigkill_at_any_point_loses_nothing_and_resume_completes(
    tmp_path: Path, victim: str, point: int | str
) -> None:
    """Kill, check every file, read the journal's message, resume, check the result."""
    scene = Scene.build(tmp_path)
    if isinstance(point, str):
        marker = tmp_path / "paused"
        proc = scene.start(
            *COMMIT_SNAP2_DELETE,
            BACKCHAIN_FAULT_PAUSE=point,
            BACKCHAIN_FAULT_PAUSE_FILE=str(marker),
        )
        wait_for(marker.exists, what=f"the runner to pause {point}")
        orphans: list[int] = []
        kill(proc.pid)
    else:
        proc = scene.start(*COMMIT_SNAP2_DELETE)
        wait_for(lambda: _reached(scene, point), what=f"{point}% of the copy")
        orphans = [c for c in children_of(proc.pid)]
        kill_victim(victim, proc.pid, orphans)
    _out, err = proc.communicate(timeout=60)
    if victim == "qemu-img" and proc.returncode != 0:
        # backchain itself survived and reports the child's death, naming the files.
        assert "snap2.qcow2" in err and "base.qcow2" in err and "killed by signal 9" in err, err
    if orphans and victim == "backchain":
        # qemu-img outlives its parent for a moment; a re-run must wait for its locks.
        attempt = scene.backchain("resume", "--yes", str(scene.jobs()[0]["id"]))
        if any(os.path.exists(f"/proc/{c}") for c in orphans) and attempt.returncode != 0:
            assert "in use" in attempt.stderr, attempt.stderr
    for child in orphans:
        wait_gone(child)

    lost = scene.active_lost()
    assert lost == 0
    assert scene.all_clean() == []
    assert scene.unchanged_outside_plan()

    jobs = scene.jobs()
    if jobs:
        chain = scene.backchain("chain", "active.qcow2")
        assert chain.returncode == 0, chain.stderr
        assert "A commit of snap2.qcow2 into base.qcow2" in chain.stderr, chain.stderr
        assert "Re-run or dismiss" in chain.stderr
        resumed = scene.backchain("resume", "--yes", str(jobs[0]["id"]))
        assert resumed.returncode == 0, resumed.stderr
    assert scene.jobs() == []
    assert scene.committed_correctly()
    assert scene.unchanged_outside_plan()
    record("1. SIGKILL (backchain / qemu-img / both)", True, max(lost, scene.active_lost()))
