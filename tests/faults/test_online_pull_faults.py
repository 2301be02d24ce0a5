"""Online pull faults against a real QEMU: Backchain SIGKILLed mid-stream and between steps (the
job and the files stay consistent, the guest view is intact, ``resume`` completes it), and a top
whose file system cannot hold the pulled data (refused before anything is sent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.helpers import kill, record, wait_for
from tests.images import (
    ChainBuilder,
    MiB,
    backing_name,
    checksums,
    compare,
    create,
    snapshot_copy,
    write,
)
from tests.integration.test_qmp_pull import guest_view_reads
from tests.qemu_vm import QemuVM, running_vm

POINTS = ["mid-stream", "after:block-stream", "before:delete"]
VIEW = [(ChainBuilder.pattern(i), i * MiB, MiB) for i in range(3)] + [(0x22, 40 * MiB, 8 * MiB)]


def _backchain(state: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    child_env = {**os.environ, "BACKCHAIN_STATE_DIR": str(state), **env}
    return subprocess.Popen([sys.executable, "-m", "backchain", *args], env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


class WatchedVM(QemuVM):
    """A QEMU with a second QMP monitor for the test: QEMU serves one client per monitor, and
    Backchain holds the first one while its job runs."""

    def argv(self) -> list[str]:
        """The usual command line, plus the test's own monitor."""
        watch = os.path.join(os.path.dirname(self.socket), "watch.sock")
        return [*super().argv(), "-qmp", f"unix:{watch},server=on,wait=off"]

    def execute(self, command: str, arguments: dict[str, object] | None = None) -> object:
        """One command on the test's monitor."""
        engine_socket = self.socket
        self.socket = os.path.join(os.path.dirname(engine_socket), "watch.sock")
        try:
            return super().execute(command, arguments)
        finally:
            self.socket = engine_socket


@contextmanager
def watched_vm(layers: list[Path], directory: Path) -> Iterator[WatchedVM]:
    """A started WatchedVM (QEMU opens the backing files itself), always stopped afterwards."""
    vm = WatchedVM(layers, directory, explicit_backing=False)
    try:
        vm.start()
        yield vm
    finally:
        vm.stop()


def _streamed_some(vm: QemuVM) -> bool:
    jobs = vm.execute("query-jobs")
    assert isinstance(jobs, list)
    return any(int(job.get("current-progress") or 0) > 0 for job in jobs)


def _view_intact(vm: QemuVM) -> bool:
    # The last check must fail: base's pattern is not what the guest reads at 1 MiB.
    wrong = [(ChainBuilder.pattern(0), MiB, MiB)]
    return guest_view_reads(vm, "top", VIEW + wrong) == [True] * len(VIEW) + [False]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_an_online_pull_then_resume_completes(tmp_path: Path, point: str) -> None:
    builder = ChainBuilder(tmp_path / "img")
    base, mid, top = builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    write(mid, 0x22, 40 * MiB, 8 * MiB)  # enough that a throttled stream takes seconds
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    base_sum = checksums([base])
    state = tmp_path / "state"
    marker = tmp_path / "paused"
    with watched_vm([base, mid, top], tmp_path) as vm:
        args = ["pull", "--qmp", vm.socket, "--base", str(base), "--delete", "--yes"]
        if point == "mid-stream":
            proc = _backchain(state, *args, "--rate", str(MiB))
            wait_for(lambda: _streamed_some(vm), what="the stream to copy its first bytes")
        else:
            proc = _backchain(state, *args, BACKCHAIN_FAULT_PAUSE=point,
                              BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
            wait_for(marker.exists, what=f"the runner to pause {point}")
        kill(proc.pid)
        proc.communicate(timeout=60)
        assert mid.exists()  # nothing is deleted before the verify has run
        assert _view_intact(vm)
        listed = _backchain(state, "resume", "--json")
        out, err = listed.communicate(timeout=60)
        jobs = json.loads(out)
        assert len(jobs) == 1 and jobs[0]["plan"]["operation"] == "pull", err
        resumed = _backchain(state, "resume", "--yes", str(jobs[0]["id"]))
        _out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert vm.execute("query-jobs") == []
        assert not mid.exists()
        assert _view_intact(vm)
    assert backing_name(top) == "base.qcow2"
    assert compare(top, before)
    assert checksums([base]) == base_sum
    record("5b. online pull: SIGKILL of backchain, then resume", True, 0)


def test_an_online_pull_that_does_not_fit_in_tops_file_system_is_refused(
    tmp_path: Path, small_fs: Path
) -> None:
    base = create(tmp_path / "base.qcow2", "64M")
    write(base, 0x11, 0, 30 * MiB)  # 30 MiB to pull into a 24 MiB file system
    top = create(small_fs / "top.qcow2", backing=str(base))
    sums = checksums([base, top])
    with running_vm([base, top], tmp_path, explicit_backing=False) as vm:
        proc = _backchain(tmp_path / "state", "pull", "--qmp", vm.socket, "--yes")
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        # Checked on top's file system (the one that grows) by the plan, before any journal.
        assert f"not enough free space for top '{top}' to grow" in err, err
        assert not list((tmp_path / "state").rglob("*.json"))  # no journal: nothing started
        assert vm.execute("query-jobs") == []
    assert checksums([base, top]) == sums
    record("2c. full disk during an online pull (top's file system)", True, 0)
