"""Fault 2: the base's file system is too small, or fills up while the commit runs (real tmpfs)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import COMMIT_SNAP2_DELETE, MiB, Scene, record, tmpfs, wait_for
from tests.images import tree_checksums


def _mounted_scene(root: Path, size: str) -> Iterator[Scene]:
    with tmpfs(root / "vm", size):
        yield Scene.build(root)


@pytest.fixture
def small_fs_scene(tmp_path: Path) -> Iterator[Scene]:
    """The whole chain on a 56 MiB tmpfs: too small for the 24 MiB the commit copies."""
    yield from _mounted_scene(tmp_path, "56m")


@pytest.fixture
def roomy_fs_scene(tmp_path: Path) -> Iterator[Scene]:
    """The chain on a 96 MiB tmpfs: enough room until something else fills it."""
    yield from _mounted_scene(tmp_path, "96m")


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_too_little_space_is_refused_before_anything_is_written(small_fs_scene: Scene) -> None:
    """The planner's estimate does not fit: refused, naming base and the sizes."""
    scene = small_fs_scene
    before = tree_checksums(scene.dir)
    result = scene.backchain(*COMMIT_SNAP2_DELETE)
    assert result.returncode == 2, result.stderr
    assert "base.qcow2" in result.stderr and "not enough free space" in result.stderr
    assert tree_checksums(scene.dir) == before
    assert scene.jobs() == []
    record("2. full disk", True, scene.active_lost())


def test_disk_filling_up_during_the_commit_loses_nothing_and_resume_completes(
    roomy_fs_scene: Scene, tmp_path: Path
) -> None:
    """Another program fills the file system at 20%: qemu-img fails with ENOSPC, the message
    names base and the cause, every view reads as before; after space is freed, resume works."""
    scene = roomy_fs_scene
    proc = scene.start(*COMMIT_SNAP2_DELETE)

    def at_20_percent() -> bool:
        jobs = scene.jobs()
        return bool(jobs) and jobs[0]["current"] == 0 and float(jobs[0]["fraction"]) >= 0.2

    wait_for(at_20_percent, what="20% of the copy")
    filler = scene.dir / "filler.bin"
    with open(filler, "wb") as handle:
        chunk = b"\xff" * MiB
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError:
            pass  # ENOSPC: the file system is full, as intended
    assert _free(scene.dir) < MiB
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "committing snap2.qcow2 into base.qcow2 failed" in err, err
    assert "No space left on device" in err, err
    assert "Traceback" not in err
    filler.unlink()
    lost = scene.active_lost()
    assert lost == 0
    assert scene.all_clean() == []
    assert scene.unchanged_outside_plan()
    chain = scene.backchain("chain", "active.qcow2")
    assert "No space left on device" in chain.stderr and "Re-run or dismiss" in chain.stderr
    resumed = scene.backchain("resume", "--yes", str(scene.jobs()[0]["id"]))
    assert resumed.returncode == 0, resumed.stderr
    assert scene.committed_correctly()
    assert scene.unchanged_outside_plan()
    record("2. full disk", True, lost)
