"""The safety features themselves: the exclusive lock, the journal's life cycle and message,
dismissing, verify-before-delete, and what --no-verify says in the plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.faults.helpers import Scene, qemu_io, record, wait_for
from tests.images import MiB, checksums, tree_checksums

COMMIT = ("commit", "--yes", "--top", "snap2.qcow2", "--delete", "active.qcow2")


def test_second_backchain_on_the_same_base_is_refused_naming_the_first(tmp_path: Path) -> None:
    """While one Backchain holds base, another is refused with the first one's pid and command."""
    scene = Scene.build(tmp_path)
    marker = tmp_path / "paused"
    first = scene.start(*COMMIT, BACKCHAIN_FAULT_PAUSE="before:commit",
                        BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
    wait_for(marker.exists, what="the first commit to hold its locks")
    before = tree_checksums(scene.dir)
    second = scene.backchain(*COMMIT)
    assert second.returncode == 2, second.stderr
    assert f"Backchain process {first.pid}" in second.stderr, second.stderr
    assert "base.qcow2" in second.stderr and "commit" in second.stderr
    assert tree_checksums(scene.dir) == before
    # A job that is running is not reported as unfinished.
    assert "interrupted" not in scene.backchain("chain", "active.qcow2").stderr
    marker.unlink()
    _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert scene.jobs() == []
    assert scene.committed_correctly()
    record("lock: second Backchain on one base", True, scene.active_lost())


def test_journal_message_dismiss_and_json(tmp_path: Path) -> None:
    """An interrupted job is listed with a message naming files; --dismiss forgets it only."""
    scene = Scene.build(tmp_path)
    marker = tmp_path / "paused"
    proc = scene.start(*COMMIT, BACKCHAIN_FAULT_PAUSE="after:commit",
                       BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
    wait_for(marker.exists, what="the pause after the commit")
    proc.kill()
    proc.wait()
    listing = scene.backchain("resume")
    job_id = str(scene.jobs()[0]["id"])
    assert job_id in listing.stdout
    assert "A commit of snap2.qcow2 into base.qcow2 was interrupted after 1 of 5 steps, " \
           "before re-pointing active.qcow2" in listing.stdout  # fmt: skip
    assert "active.qcow2 still reads correctly; snap1.qcow2, other.qcow2 may read changed data" \
        in listing.stdout  # fmt: skip
    as_json = json.loads(scene.backchain("chain", "--json", "active.qcow2").stdout)
    assert [job["id"] for job in as_json["unfinished_jobs"]] == [job_id]
    unrelated = scene.backchain("chain", str(scene.p("unrelated.qcow2")))
    assert "interrupted" not in unrelated.stderr
    before = tree_checksums(scene.dir)
    dismissed = scene.backchain("resume", "--dismiss", job_id[:12])
    assert dismissed.returncode == 0, dismissed.stderr
    assert scene.jobs() == [] and tree_checksums(scene.dir) == before
    assert scene.active_lost() == 0


def test_killed_in_a_later_step_the_record_reads_as_after_the_copy_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    """The start of a step after the first is not written on its own (the record already has a
    step done): killed during the rebase, the record still says where the job stands."""
    scene = Scene.build(tmp_path)
    marker = tmp_path / "rebasing"
    wrapper = tmp_path / "qemu-img-wrapper"
    # The real qemu-img runs every step but the first rebase, which waits to be killed (exec:
    # the sleep inherits the death signal of Backchain's children). The plan recorded this
    # path, so the re-run goes through here too, to the real rebase.
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = rebase ] && [ ! -e {marker} ]; then touch {marker}; '
        f'exec sleep 60; fi\nexec {shutil.which("qemu-img")} "$@"\n'
    )
    wrapper.chmod(0o755)
    proc = scene.start(*COMMIT, BACKCHAIN_QEMU_IMG=str(wrapper))
    wait_for(marker.exists, what="the rebase step")
    proc.kill()
    proc.wait()
    jobs = scene.jobs()
    assert len(jobs) == 1 and jobs[0]["done"] == 1, jobs
    listing = scene.backchain("resume")
    assert "A commit of snap2.qcow2 into base.qcow2 was interrupted after 1 of 5 steps, " \
           "before re-pointing active.qcow2" in listing.stdout  # fmt: skip
    rerun = scene.backchain("resume", "--yes", str(jobs[0]["id"]))
    assert rerun.returncode == 0, rerun.stderr
    assert scene.jobs() == []
    assert scene.committed_correctly() and scene.unchanged_outside_plan()
    record("killed in the rebase, then resume", True, scene.active_lost())


def test_verify_failure_keeps_every_file(tmp_path: Path) -> None:
    """Base is changed behind our back after the commit: compare fails, nothing is deleted, and
    the message says so."""
    scene = Scene.build(tmp_path)
    marker = tmp_path / "paused"
    proc = scene.start(*COMMIT, BACKCHAIN_FAULT_PAUSE="after:rebase",
                       BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
    wait_for(marker.exists, what="the pause after the rebase")
    qemu_io(scene.base, [f"write -P 0x99 {MiB // 2} 4096"])  # snap2's data lives there
    sums = checksums([scene.p("snap1.qcow2"), scene.p("snap2.qcow2")])
    marker.unlink()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "snap2.qcow2 and base.qcow2 differ after the commit, so nothing was deleted" in err
    assert checksums([scene.p("snap1.qcow2"), scene.p("snap2.qcow2")]) == sums
    assert scene.unchanged_outside_plan()
    record("verify before delete (base changed)", True)


def test_no_verify_is_stated_in_the_plan(tmp_path: Path) -> None:
    """--no-verify: the plan JSON has no verify step, says verify is off, and gives a note."""
    scene = Scene.build(tmp_path)
    plain = json.loads(scene.backchain("plan", "--json", *COMMIT[2:]).stdout)
    assert plain["verify"] is True
    assert any(step[:2] == ["qemu-img", "compare"] for step in plain["steps"])
    skipped = json.loads(scene.backchain("plan", "--json", "--no-verify", *COMMIT[2:]).stdout)
    assert skipped["verify"] is False
    assert not any(step[:2] == ["qemu-img", "compare"] for step in skipped["steps"])
    assert any("--no-verify" in note for note in skipped["notes"])
    words = scene.backchain("plan", "--no-verify", *COMMIT[2:]).stdout
    assert "--no-verify" in words or "without comparing" in words


def test_cancel_leaves_a_record_that_says_cancelled_and_resumes(tmp_path: Path) -> None:
    """Cancel in the middle of the copy (in-process, as the window does): the record says so,
    the view is intact, and resume_job completes the commit."""
    from backchain.core.errors import CancelledError
    from backchain.core.model import CommitRequest
    from backchain.engines import journal
    from backchain.engines.files.scan import open_graph
    from backchain.engines.progress import CancelToken, RecordingSink
    from backchain.engines.registry import make_plan
    from backchain.engines.runner import resume_job, run_plan

    scene = Scene.build(tmp_path)
    active = str(scene.p("active.qcow2").resolve())
    request = CommitRequest(image=active, top=str(scene.p("snap2.qcow2").resolve()),
                            delete=True, rate=8 * MiB)  # fmt: skip
    token = CancelToken()

    class CancellingSink(RecordingSink):
        def advanced(self, done: int, total: int, phase: str) -> None:
            super().advanced(done, total, phase)
            if done > 0:
                token.cancel()

    try:
        run_plan(make_plan(open_graph(active), request), CancellingSink(), token)
    except CancelledError:
        pass
    records = journal.unfinished_jobs([active])
    assert len(records) == 1
    assert "A commit of snap2.qcow2 into base.qcow2 was cancelled at" in journal.describe(
        records[0]
    )
    assert scene.active_lost() == 0 and scene.all_clean() == []
    resume_job(records[0], RecordingSink(), CancelToken())
    assert journal.unfinished_jobs([active]) == []
    assert scene.committed_correctly() and scene.unchanged_outside_plan()
    record("cancel, then resume", True)
