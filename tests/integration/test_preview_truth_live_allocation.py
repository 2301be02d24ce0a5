"""The active layer's allocation read from QEMU itself: writes still in QEMU's cache are counted.

The issue's measured case: data written into the active layer through HMP qemu-io sits in
QEMU's cache, and the file's L2 tables do not show it yet, so a plan read from disk said 0 bytes
to copy. Read from QEMU (a private NBD export, ``qemu:allocation-depth``), the figures are
exact while the VM is paused, and lower bounds with the reason while it runs or when QEMU cannot
tell. Each plan is committed for real and the sibling's view measured byte by byte.
"""

from __future__ import annotations

from pathlib import Path

from backchain.core.model import CommitPlan, CommitRequest, OnReady
from backchain.engines.base import QmpTarget
from backchain.engines.files.qcow2_alloc import own_allocation
from backchain.engines.progress import RecordingSink
from backchain.engines.qmp.engine import QmpEngine
from backchain.engines.qmp.graph import root_for
from backchain.engines.registry import make_plan
from tests.images import MiB, create, write
from tests.qemu_vm import QemuVM, running_vm
from tests.views import commit_and_measure

# HMP qemu-io needs the device's own BlockBackend: virtio-blk does not share writes on the node.
_DEVICE = "/machine/peripheral/vd0/virtio-backend"
_COPIED = 10 * MiB
"""What top allocates once QEMU's writes count: 9 MiB of data and 1 MiB of zero clusters."""
_CHANGED = 9 * MiB
"""What the clone reads differently: the zero clusters lie over zeros of base."""


def chain(tmp_path: Path) -> tuple[Path, Path, Path]:
    """base (0x11 over 0-8 MiB) <- top (empty), and clone on base, which QEMU does not open."""
    base = create(tmp_path / "base.qcow2")
    write(base, 0x11, 0, 8 * MiB)
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    clone = create(tmp_path / "clone.qcow2", backing="base.qcow2", cwd=tmp_path)
    return base, top, clone


def cache_writes(vm: QemuVM) -> None:
    """1 MiB over base's data, 8 MiB over its zeros, and 1 MiB of zero clusters over zeros."""
    for command in ("write -P 0x5a 0 1M", "write -P 0x5b 16M 8M", "write -z 30M 1M"):
        said = vm.execute("human-monitor-command",
                          {"command-line": f'qemu-io -d {_DEVICE} "{command}"'})  # fmt: skip
        assert "rror" not in str(said), said


def active_plan(vm: QemuVM) -> CommitPlan:
    graph = QmpEngine().read_graph(QmpTarget(vm.socket))
    request = CommitRequest(image=root_for(graph).path, engine="qmp", active=True,  # type: ignore[arg-type]
                            on_ready=OnReady.PIVOT)  # fmt: skip
    return make_plan(graph, request)


def at_risk(plan: CommitPlan) -> list[tuple[str, int, bool]]:
    return [(Path(a.image).name, a.bytes, a.exact) for a in plan.at_risk]


def commit(plan: CommitPlan, clone: Path, tmp_path: Path, vm: QemuVM) -> dict[str, int]:
    found = commit_and_measure(
        plan, [clone], tmp_path, vm.socket, RecordingSink(on_ready=OnReady.PIVOT), vm.stop
    )
    return found[clone.name]


def test_cached_writes_are_counted_exactly_while_the_vm_is_paused(tmp_path: Path) -> None:
    base, top, clone = chain(tmp_path)
    with running_vm([base, top], tmp_path) as vm:
        cache_writes(vm)
        assert own_allocation(str(top)).size == 0  # the file does not show them: the old figure
        plan = active_plan(vm)
        assert (plan.bytes_to_copy, plan.bytes_to_copy_exact) == (_COPIED, True)
        assert at_risk(plan) == [("clone.qcow2", _CHANGED, True)]
        assert any("read from QEMU itself" in n and "prelaunch" in n for n in plan.notes)
        assert plan.to_json()["bytes_to_copy_exact"] is True
        # Nothing is left behind: no export, and our server is gone (a new one starts).
        assert vm.execute("query-block-exports") == []
        probe = str(tmp_path / "probe.sock")
        vm.execute("nbd-server-start", {"addr": {"type": "unix", "data": {"path": probe}}})
        vm.execute("nbd-server-stop")
        measured = commit(plan, clone, tmp_path, vm)
    assert measured[""] == _CHANGED
    # QEMU's own view, once it has flushed and closed top: exactly what the plan counted.
    assert own_allocation(str(top)).size == plan.bytes_to_copy


def test_a_running_vm_keeps_lower_bounds_and_says_why(tmp_path: Path) -> None:
    base, top, clone = chain(tmp_path)
    with running_vm([base, top], tmp_path) as vm:
        cache_writes(vm)
        vm.execute("cont")
        plan = active_plan(vm)
        # QEMU's reading counts the cached writes; the guest may still add more during the job.
        assert (plan.bytes_to_copy, plan.bytes_to_copy_exact) == (_COPIED, False)
        assert at_risk(plan) == [("clone.qcow2", _CHANGED, False)]
        assert any("read from QEMU at plan time" in n and "keeps writing" in n and
                   "lower bounds" in n for n in plan.notes)  # fmt: skip
        assert vm.execute("query-block-exports") == []
        measured = commit(plan, clone, tmp_path, vm)
    assert measured[""] >= _CHANGED


def test_someone_elses_nbd_server_is_left_running_and_the_plan_falls_back(
    tmp_path: Path,
) -> None:
    base, top, clone = chain(tmp_path)
    with running_vm([base, top], tmp_path) as vm:
        other = str(tmp_path / "other.sock")
        vm.execute("nbd-server-start", {"addr": {"type": "unix", "data": {"path": other}}})
        cache_writes(vm)
        plan = active_plan(vm)
        # Read from disk, the cached writes are missed: marked as a lower bound, with the reason.
        assert (plan.bytes_to_copy, plan.bytes_to_copy_exact) == (0, False)
        assert at_risk(plan) == [("clone.qcow2", 0, False)]
        assert any("already runs an NBD server" in n and "read from disk" in n and
                   "lower bounds" in n for n in plan.notes)  # fmt: skip
        assert vm.execute("query-block-exports") == []
        vm.execute("nbd-server-stop")  # still running: QEMU would refuse to stop a stopped one
        measured = commit(plan, clone, tmp_path, vm)
    assert measured[""] == _CHANGED
