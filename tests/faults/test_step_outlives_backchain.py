"""A step that outlives Backchain: killed just as it started qemu-img, before the child asked
the kernel to kill it with its parent, Backchain leaves the step running as an orphan. Resume
finds the job's own step holding the lock, waits for it, then completes the job.

The kill cannot land in that moment on purpose, so the test makes the orphan itself: it kills
Backchain before the step, then starts the step's very command line with no Backchain above
it, which is what the race leaves behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backchain.core.codec import plan_from_record
from backchain.engines.files.facts import lock_holder
from tests.faults.helpers import record, wait_for
from tests.faults.test_pull_faults import killed_before_the_pull


@pytest.mark.slow
def test_resume_waits_for_the_step_a_killed_backchain_left_running(tmp_path: Path) -> None:
    scene, job = killed_before_the_pull(tmp_path)
    pull = plan_from_record(job["record"]).steps[0]  # type: ignore[arg-type]
    assert pull.kind.value == "pull" and pull.argv[1] == "rebase"

    top = scene.p("active.qcow2")
    orphan = subprocess.Popen(list(pull.argv), cwd=pull.cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: lock_holder(str(top)) is not None, what="the orphan to lock top")
        resumed = scene.backchain("resume", "--yes", str(job["id"]))
        assert orphan.poll() is not None, "resume ran while the orphan still held top"
    finally:
        orphan.kill()
        _out, orphan_err = orphan.communicate(timeout=60)
    assert orphan.returncode == 0, orphan_err
    assert resumed.returncode == 0, resumed.stderr
    assert scene.jobs() == []
    assert scene.pulled_correctly()
    record("step left running by a killed Backchain, then resume", True, scene.active_lost())
