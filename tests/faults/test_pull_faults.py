"""Pull faults: SIGKILL mid-rebase (and at step boundaries) leaves top on its old chain, reading
correctly; free space is checked for top, which grows, not for base (real tmpfs)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchain.engines.files.facts import lock_holder
from tests.faults.helpers import Scene as CommitScene
from tests.faults.helpers import children_of, kill, kill_victim, record, tmpfs, wait_for, wait_gone
from tests.images import backing_name, checksums, compare, create, snapshot_copy, write

MiB = 1 << 20
PULL_DELETE = ("pull", "--yes", "--base", "base.qcow2", "--delete", "active.qcow2")


class PullScene(CommitScene):
    """``base <- snap <- active``, ``other`` on base, an unrelated image; snap holds 1 GiB, so
    that qemu-img rebase (which has no rate limit) takes a few seconds."""

    @classmethod
    def build_pull(cls, root: Path) -> PullScene:
        scene = cls(root / "vm", root / "state", root / "reference")
        scene.dir.mkdir(parents=True, exist_ok=True)
        scene.keep.mkdir(exist_ok=True)
        base = create(scene.p("base.qcow2"), "2G")
        write(base, 0x11, 0, 256 * MiB)
        snap = create(scene.p("snap.qcow2"), backing="base.qcow2", cwd=scene.dir)
        write(snap, 0x22, 128 * MiB, 1024 * MiB)
        active = create(scene.p("active.qcow2"), backing="snap.qcow2", cwd=scene.dir)
        write(active, 0x44, 512 * MiB, 4 * MiB)
        other = create(scene.p("other.qcow2"), backing="base.qcow2", cwd=scene.dir)
        write(other, 0x55, 3 * MiB, MiB)
        unrelated = create(scene.p("unrelated.qcow2"), "64M")
        write(unrelated, 0x66, 0, MiB)
        snapshot_copy(active, scene.keep / "active-view.qcow2")
        scene.sums = checksums([base, other, unrelated])
        return scene

    def top_on_old_chain_and_correct(self) -> bool:
        return backing_name(self.p("active.qcow2")) == "snap.qcow2" and self.active_lost() == 0

    def pulled_correctly(self) -> bool:
        return (
            backing_name(self.p("active.qcow2")) == "base.qcow2"
            and self.active_lost() == 0
            and not self.p("snap.qcow2").exists()
            and self.unchanged_outside_plan()
        )


def not_corrupt(path: Path) -> bool:
    """qemu-img check finds no corruption (leaked clusters after a SIGKILL are harmless)."""
    result = subprocess.run(
        ["qemu-img", "check", "-U", str(path)], capture_output=True, check=False
    )
    return result.returncode in (0, 3)


def _copied(scene: PullScene, percent: int) -> bool:
    jobs = scene.jobs()
    if not jobs:
        return False
    job = jobs[0]
    return bool(job["done"] or (job["current"] == 0 and float(job["fraction"]) * 100 >= percent))  # type: ignore[arg-type]


POINTS = [("backchain", 15), ("qemu-img", 45), ("both", 60), ("qemu-img", 99), ("both", 100)] + [
    ("backchain", pause) for pause in ("before:pull", "after:pull", "after:verify")
]


@pytest.mark.slow
@pytest.mark.parametrize(("victim", "point"), POINTS, ids=[f"{v}-{p}" for v, p in POINTS])
def test_sigkill_mid_pull_leaves_top_on_its_old_chain_and_resume_completes(
    tmp_path: Path, victim: str, point: int | str
) -> None:
    scene = PullScene.build_pull(tmp_path)
    orphans: list[int] = []
    if isinstance(point, str):
        marker = tmp_path / "paused"
        proc = scene.start(*PULL_DELETE, BACKCHAIN_FAULT_PAUSE=point,
                           BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
        wait_for(marker.exists, what=f"the runner to pause {point}")
        kill(proc.pid)
    else:
        proc = scene.start(*PULL_DELETE)
        wait_for(lambda: _copied(scene, point), what=f"{point}% of the rebase")
        orphans = children_of(proc.pid)
        kill_victim(victim, proc.pid, orphans)
    _out, err = proc.communicate(timeout=60)
    for child in orphans:
        wait_gone(child)
    if victim == "qemu-img" and proc.returncode != 0:
        # At 99 % the rebase may end before the kill lands: the pull then succeeded, or the
        # kill hit the verify that follows it, which deletes nothing and says so.
        assert proc.returncode == 1, err
        if "pulling into active.qcow2 failed" in err:
            assert "still backed by snap.qcow2 and reads correctly" in err, err
        else:
            assert "comparing active.qcow2 with its old chain failed" in err, err
            assert "Nothing was deleted" in err, err

    backing = backing_name(scene.p("active.qcow2"))
    if point in ("after:pull", "after:verify"):
        assert backing == "base.qcow2" and scene.active_lost() == 0
    elif point == "before:pull":
        assert scene.top_on_old_chain_and_correct()
    else:
        # qemu-img rewrites the header only after the last copy: top is on its old chain, or
        # (if the kill came just after the rebase ended) on the new one; never in between.
        assert backing in ("snap.qcow2", "base.qcow2") and scene.active_lost() == 0
    assert scene.unchanged_outside_plan()
    assert proc.returncode == 0 or scene.p("snap.qcow2").exists()
    assert not_corrupt(scene.p("active.qcow2"))

    jobs = scene.jobs()
    if jobs:
        chain = scene.backchain("chain", "active.qcow2")
        assert "A pull into active.qcow2" in chain.stderr, chain.stderr
        resumed = scene.backchain("resume", "--yes", str(jobs[0]["id"]))
        assert resumed.returncode == 0, resumed.stderr
    elif proc.returncode != 0:
        rerun = scene.backchain(*PULL_DELETE)
        assert rerun.returncode == 0, rerun.stderr
    assert scene.jobs() == []
    assert scene.pulled_correctly()
    record("1b. SIGKILL during a pull", True, scene.active_lost())


@pytest.fixture
def split_fs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two small file systems: ``low`` for base and snap, ``high`` for active."""
    with tmpfs(tmp_path / "low", "48m") as low, tmpfs(tmp_path / "high", "24m") as high:
        yield low, high


def _split_chain(low: Path, high: Path) -> tuple[Path, Path, Path]:
    base = create(low / "base.qcow2", "64M")
    write(base, 0x11, 0, 8 * MiB)
    snap = create(low / "snap.qcow2", backing="base.qcow2", cwd=low)
    active = create(high / "active.qcow2", backing=str(snap))
    return base, snap, active


def test_a_pull_that_does_not_fit_in_tops_file_system_is_refused(
    split_fs: tuple[Path, Path],
) -> None:
    low, high = split_fs
    base, snap, active = _split_chain(low, high)
    write(snap, 0x22, 8 * MiB, 30 * MiB)  # 30 MiB to pull into a 24 MiB file system
    sums = checksums([base, snap, active])
    result = PullScene(high, high / "state", high).backchain("pull", "--yes", str(active))
    assert result.returncode == 2, result.stderr
    assert "not enough free space for top" in result.stderr and "active.qcow2" in result.stderr
    assert checksums([base, snap, active]) == sums
    record("2b. full disk during a pull", True, 0)


def test_a_full_base_file_system_does_not_stop_a_pull(split_fs: tuple[Path, Path]) -> None:
    low, high = split_fs
    base, snap, active = _split_chain(low, high)
    write(snap, 0x22, 8 * MiB, 8 * MiB)
    before = snapshot_copy(active, low.parent / "before.qcow2")
    filler = low / "filler.bin"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\xff" * MiB)
                handle.flush()
        except OSError:
            pass  # low is full now: a commit into base could not grow it
    commit = PullScene(high, high / "state", high).backchain("plan", str(active))
    assert commit.returncode == 2 and "not enough free space" in commit.stderr
    sums = checksums([base, snap])
    result = PullScene(high, high / "state", high).backchain(
        "pull", "--yes", "--base", str(base), str(active)
    )
    assert result.returncode == 0, result.stderr
    assert compare(active, before) and checksums([base, snap]) == sums
    assert backing_name(active) == str(base)
    record("2b. full disk during a pull", True, 0)


def killed_before_the_pull(tmp_path: Path) -> tuple[PullScene, dict[str, object]]:
    """The standard pull, with Backchain SIGKILLed just before its rebase: the scene and the
    job record it left."""
    scene = PullScene.build_pull(tmp_path)
    marker = tmp_path / "paused"
    proc = scene.start(*PULL_DELETE, BACKCHAIN_FAULT_PAUSE="before:pull",
                       BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
    wait_for(marker.exists, what="the runner to pause before the pull")
    kill(proc.pid)
    proc.communicate(timeout=60)
    (job,) = scene.jobs()
    return scene, job


@pytest.mark.slow
def test_resuming_a_pull_is_not_refused_for_a_vm_that_reads_base(tmp_path: Path) -> None:
    """A pull only reads base; a VM on the sibling overlay holds base's read lock, and neither
    the pull nor its resume may call that a conflict."""
    scene, job = killed_before_the_pull(tmp_path)
    sibling = subprocess.Popen(["qemu-io", "-f", "qcow2", str(scene.p("other.qcow2"))],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: lock_holder(str(scene.p("base.qcow2"))) is not None, what="base's lock")
        resumed = scene.backchain("resume", "--yes", str(job["id"]))
        assert sibling.poll() is None  # base was held for the whole resume
    finally:
        assert sibling.stdin is not None
        sibling.stdin.close()
        sibling.wait(timeout=30)
    assert resumed.returncode == 0, resumed.stderr
    assert scene.pulled_correctly()
