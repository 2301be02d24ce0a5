"""Faults 3 and 4: an image in use by QEMU, read-only bases and directories, a missing backing.

As root, permission bits stop nothing, so "read-only" is produced for real with a read-only
bind mount or chattr +i, as well as with chmod a-w (which Backchain honours on purpose).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backchain.core.errors import PlanError
from backchain.core.model import CommitRequest
from backchain.engines.files.scan import open_graph
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan
from tests.faults.helpers import Scene, record, wait_for
from tests.images import tree_checksums
from tests.qemu_vm import running_vm

COMMIT = ("commit", "--yes", "--top", "snap2.qcow2", "--delete", "active.qcow2")


def sh(*argv: str) -> None:
    """Run a system command (mount, chattr) that must succeed."""
    subprocess.run(list(argv), check=True, capture_output=True)


@contextmanager
def read_only_bind(path: Path) -> Iterator[None]:
    """Bind-mount ``path`` onto itself read-only, and always unmount it."""
    sh("mount", "--bind", str(path), str(path))
    try:
        sh("mount", "-o", "remount,bind,ro", str(path))
        yield
    finally:
        sh("umount", str(path))


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """chattr +i, always undone."""
    sh("chattr", "+i", str(path))
    try:
        yield
    finally:
        sh("chattr", "-i", str(path))


def refused_cleanly(scene: Scene, words: list[str], fault: str) -> None:
    """The CLI refuses with exit 2, names the file and the cause, and changes no byte."""
    before = tree_checksums(scene.dir)
    result = scene.backchain(*COMMIT)
    survived = result.returncode == 2 and all(w in result.stderr for w in words)
    assert survived, (result.returncode, result.stderr)
    assert tree_checksums(scene.dir) == before
    assert scene.jobs() == []
    assert "Traceback" not in result.stderr
    record(fault, survived, scene.active_lost())


def plan_now(scene: Scene) -> object:
    """Plan the standard commit in-process (the moment a GUI shows its preview)."""
    graph = open_graph(str(scene.p("active.qcow2")))
    active = str(scene.p("active.qcow2").resolve())
    request = CommitRequest(image=active, top=str(scene.p("snap2.qcow2").resolve()), delete=True)
    return make_plan(graph, request)


def test_image_in_use_by_qemu_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A running QEMU holds the chain: the CLI refuses, and so does the runner if QEMU starts
    after the plan was made."""
    scene = Scene.build(tmp_path)
    layers = [scene.p(n) for n in ("base.qcow2", "snap1.qcow2", "snap2.qcow2", "active.qcow2")]
    planned = plan_now(scene)
    with running_vm(layers, tmp_path) as vm:
        wait_for(lambda: (tmp_path / "qmp.sock").exists(), what="QEMU")
        vm.execute("query-status")  # QEMU has opened (and locked) every image by now
        refused_cleanly(scene, ["in use", "Stop the VM"], "3. image in use by QEMU")
        before = tree_checksums(scene.dir)
        assert vm.proc is not None
        qemu = rf"in use by a running QEMU: qemu-system-x86_64 \(pid {vm.proc.pid}\) holds"
        with pytest.raises(PlanError, match=qemu):  # named, and refused without waiting
            run_plan(planned, RecordingSink(), CancelToken())  # type: ignore[arg-type]
        assert tree_checksums(scene.dir) == before
        assert scene.jobs() == []
        record("3. image in use by QEMU", True)


@pytest.mark.parametrize("how", ["chmod", "ro-bind-mount", "chattr"])
def test_read_only_base_is_refused(tmp_path: Path, how: str) -> None:
    """chmod a-w, a read-only bind mount and chattr +i each stop the commit before it writes."""
    scene = Scene.build(tmp_path)
    if how == "chmod":
        scene.base.chmod(0o444)
        refused_cleanly(scene, ["base.qcow2", "not writable"], "4a. read-only base")
        return
    wrapper = read_only_bind if how == "ro-bind-mount" else immutable
    with wrapper(scene.base):
        refused_cleanly(scene, ["base.qcow2", "not writable"], "4a. read-only base")


def test_base_made_read_only_after_planning_is_refused_by_the_runner(tmp_path: Path) -> None:
    """The preview was shown, then the base's file system went read-only: nothing is written."""
    scene = Scene.build(tmp_path)
    planned = plan_now(scene)
    with read_only_bind(scene.base):
        before = tree_checksums(scene.dir)
        with pytest.raises(PlanError, match=r"base\.qcow2 is not writable"):
            run_plan(planned, RecordingSink(), CancelToken())  # type: ignore[arg-type]
        assert tree_checksums(scene.dir) == before
    record("4a. read-only base", True, scene.active_lost())


def test_read_only_directory_refuses_delete_before_anything_is_written(tmp_path: Path) -> None:
    """Files that cannot be deleted are known before the commit starts."""
    scene = Scene.build(tmp_path)
    with immutable(scene.dir):
        refused_cleanly(
            scene,
            ["snap2.qcow2", "cannot be deleted", "read-only"],
            "4b. read-only directory / file",
        )


@pytest.mark.parametrize(
    ("pause", "target", "words"),
    [
        ("after:verify", "dir", ["deleting snap2.qcow2 failed", "Operation not permitted"]),
        ("after:commit", "active.qcow2", ["re-pointing active.qcow2", "failed"]),
    ],
)
def test_delete_or_rebase_failing_midway_keeps_data_and_resume_completes(
    tmp_path: Path, pause: str, target: str, words: list[str]
) -> None:
    """The directory (or the overlay) becomes read-only between steps: the step fails with a
    message naming the file, every view still reads, and re-running completes the job."""
    scene = Scene.build(tmp_path)
    marker = tmp_path / "paused"
    proc = scene.start(*COMMIT, BACKCHAIN_FAULT_PAUSE=pause, BACKCHAIN_FAULT_PAUSE_FILE=str(marker))
    wait_for(marker.exists, what=f"the runner to pause {pause}")
    locked = scene.dir if target == "dir" else scene.p(target)
    with immutable(locked):
        marker.unlink()
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        assert all(w in err for w in words), err
        assert "Traceback" not in err
        lost = scene.active_lost()
        assert lost == 0
        assert scene.all_clean() == []
        assert scene.unchanged_outside_plan()
        assert len(scene.jobs()) == 1
        refused = scene.backchain("resume", "--yes", str(scene.jobs()[0]["id"]))
        assert refused.returncode == 2, refused.stderr
        assert "read-only" in refused.stderr or "not writable" in refused.stderr
    resumed = scene.backchain("resume", "--yes", str(scene.jobs()[0]["id"]))
    assert resumed.returncode == 0, resumed.stderr
    assert scene.committed_correctly()
    assert scene.unchanged_outside_plan()
    record("4b. read-only directory / file", True, lost)


def test_missing_backing_file_is_refused(tmp_path: Path) -> None:
    """snap1 was moved away: the chain cannot be read, and the message names what is missing."""
    scene = Scene.build(tmp_path)
    scene.p("snap1.qcow2").rename(tmp_path / "snap1.qcow2.moved")
    before = tree_checksums(scene.dir)
    result = scene.backchain(*COMMIT)
    assert result.returncode == 2, result.stderr
    assert "snap1.qcow2" in result.stderr and "missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_checksums(scene.dir) == before
    (tmp_path / "snap1.qcow2.moved").rename(scene.p("snap1.qcow2"))
    record("4c. missing backing file", True, scene.active_lost())
