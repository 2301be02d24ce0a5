"""Fault 2, online: the file that grows (top of a pull, base of a commit) sits on a small real
tmpfs; the plan itself refuses, as offline plans do, naming the file and both figures, and
nothing reaches QEMU or libvirt."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backchain.core.errors import PlanError
from backchain.core.model import CommitRequest, EngineKind, Operation
from backchain.engines.base import QmpTarget
from backchain.engines.libvirt import engine as lv
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.engine import QmpEngine
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan
from tests.faults.helpers import record
from tests.images import MiB, backchain, backing_name, checksums, create, write
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401
from tests.qemu_vm import running_vm

URI = "qemu:///system"
_REFUSAL = re.compile(r"not enough free space for (top|base) '([^']+)' to grow: "
                      r"(\d+) bytes needed, (\d+) bytes free")  # fmt: skip


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _refusal(text: str, role: str, grows: Path) -> tuple[int, int]:
    """The figures of the planner's refusal, after checking it names the file that grows."""
    found = _REFUSAL.search(text)
    assert found is not None, text
    assert found[1] == role and found[2] == str(grows), text
    return int(found[3]), int(found[4])


def _run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKCHAIN_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "backchain", *args], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip


def _pull_scene(tmp_path: Path, small: Path) -> tuple[Path, Path]:
    base = create(tmp_path / "base.qcow2", "64M")
    write(base, 0x11, 0, 30 * MiB)  # 30 MiB to pull into a 24 MiB file system
    return base, create(small / "top.qcow2", backing=str(base))


@pytest.mark.parametrize("explicit", [True, False], ids=["blockdev-nodes", "implicit-nodes"])
def test_online_pull_plan_refuses_when_top_cannot_grow(
    tmp_path: Path, small_fs: Path, explicit: bool
) -> None:
    base, top = _pull_scene(tmp_path, small_fs)
    sums = checksums([base, top])
    with running_vm([base, top], tmp_path, explicit_backing=explicit) as vm:
        planned = backchain("plan", "--pull", "--qmp", vm.socket, "--json")
        assert planned.returncode == 2, planned.stderr
        need, free = _refusal(planned.stderr, "top", top)
        assert need > 30 * MiB and free == _free(small_fs)
        # The same words from the run itself, before any journal or job.
        state = tmp_path / "state"
        ran = _run(state, "pull", "--qmp", vm.socket, "--yes")
        assert ran.returncode == 2, ran.stderr
        assert _refusal(ran.stderr, "top", top) == (need, free)
        assert not list(state.rglob("*.json"))
        assert vm.execute("query-jobs") == []
    assert checksums([base, top]) == sums
    record("2d. online plan refuses a pull too big for top's file system", True, 0)


def test_online_commit_plan_refuses_when_base_cannot_grow(tmp_path: Path, small_fs: Path) -> None:
    base = create(small_fs / "base.qcow2", "64M")
    mid = create(tmp_path / "mid.qcow2", backing=str(base))
    write(mid, 0x22, 0, 30 * MiB)  # 30 MiB to commit into a base on 24 MiB
    top = create(tmp_path / "top.qcow2", backing=str(mid))
    sums = checksums([base, mid, top])
    with running_vm([base, mid, top], tmp_path) as vm:
        planned = backchain("plan", "--qmp", vm.socket, "--top", str(mid), "--json")
        assert planned.returncode == 2, planned.stderr
        need, free = _refusal(planned.stderr, "base", base)
        assert need > 30 * MiB and free == _free(small_fs)
        state = tmp_path / "state"
        ran = _run(state, "commit", "--qmp", vm.socket, "--top", str(mid), "--yes")
        assert ran.returncode == 2, ran.stderr
        assert _refusal(ran.stderr, "base", base) == (need, free)
        assert not list(state.rglob("*.json"))
        assert vm.execute("query-jobs") == []
    assert checksums([base, mid, top]) == sums
    record("2e. online plan refuses a commit too big for base's file system", True, 0)


def test_an_online_commit_that_fits_is_planned_with_base_free_space(tmp_path: Path) -> None:
    base = create(tmp_path / "base.qcow2", "64M")
    mid = create(tmp_path / "mid.qcow2", backing=str(base))
    write(mid, 0x22, 0, 2 * MiB)
    top = create(tmp_path / "top.qcow2", backing=str(mid))
    with running_vm([base, mid, top], tmp_path) as vm:
        planned = backchain("plan", "--qmp", vm.socket, "--top", str(mid), "--json")
        assert planned.returncode == 0, planned.stderr
        assert json.loads(planned.stdout)["bytes_to_copy"] == 2 * MiB


def test_a_file_system_that_fills_after_the_plan_is_refused_at_job_start(
    tmp_path: Path, small_fs: Path
) -> None:
    """The plan fitted; then another program took the space: the job-start check refuses."""
    base = create(tmp_path / "base.qcow2", "64M")
    write(base, 0x11, 0, 8 * MiB)
    top = create(small_fs / "top.qcow2", backing=str(base))
    with running_vm([base, top], tmp_path) as vm:
        target = QmpTarget(vm.socket)
        engine = QmpEngine()
        request = CommitRequest(image=str(top), operation=Operation.PULL, engine=EngineKind.QMP)
        plan = engine.prepare(engine.read_graph(target), target, request)
        (small_fs / "filler.bin").write_bytes(b"\xff" * (20 * MiB))
        with pytest.raises(PlanError, match=f"not enough free space for {top} to grow"):
            run_plan(plan, RecordingSink(), CancelToken(), target)
        assert vm.execute("query-jobs") == []
    assert backing_name(top) == str(base)


def test_the_windows_qmp_source_gets_the_same_refusal(tmp_path: Path, small_fs: Path) -> None:
    """The window reads the live graph with QmpEngine.read_graph and plans with make_plan."""
    base, top = _pull_scene(tmp_path, small_fs)
    with running_vm([base, top], tmp_path) as vm:
        graph = QmpEngine().read_graph(QmpTarget(vm.socket))
        assert graph.layer(str(top)).free_bytes == _free(small_fs)
        request = CommitRequest(image=str(top), operation=Operation.PULL, engine=EngineKind.QMP)
        with pytest.raises(PlanError) as refused:
            make_plan(graph, request)
        _refusal(str(refused.value), "top", top)


def test_a_running_libvirt_domain_pull_that_does_not_fit_is_refused(
    tmp_path: Path,
    small_fs: Path,
    domains: Domains,  # noqa: F811
) -> None:
    base, top = _pull_scene(tmp_path, small_fs)
    sums = checksums([base, top])
    name = domains.start({"vda": str(top)})
    target = lv.LibvirtTarget(URI, name, "vda")
    with pytest.raises(PlanError) as refused:
        lv.plan_commit(target, CommitRequest(image="", operation=Operation.PULL))
    _refusal(str(refused.value), "top", top)
    planned = backchain("plan", "--pull", "--connect", URI, "--domain", name, "--disk", "vda",
                        "--json")  # fmt: skip
    assert planned.returncode == 2, planned.stderr
    _refusal(planned.stderr, "top", top)
    assert checksums([base, top]) == sums
    record("2f. libvirt running pull too big for top's file system", True, 0)
