"""Online previews against a real QEMU: figures that depend on the written layer are lower bounds.

A running VM writes its active layer during the job, so an active commit's bytes to copy and
every figure that depends on top are marked ``exact: false``; the layers below it are
read-only in QEMU, so an intermediate commit's figures stay exact. Each plan is then run for
real, and every sibling's view is measured byte by byte (tests/views.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchain.core.model import CommitPlan, CommitRequest, OnReady
from backchain.engines.base import QmpTarget
from backchain.engines.progress import RecordingSink
from backchain.engines.qmp.engine import QmpEngine
from backchain.engines.qmp.graph import root_for
from backchain.engines.registry import make_plan
from tests.images import ChainBuilder, MiB, run, write
from tests.qemu_vm import QemuVM, running_vm
from tests.views import commit_and_measure


@pytest.fixture
def layers(chain_builder: ChainBuilder) -> list[Path]:
    """base <- mid <- top in the VM, and a clone of base next to them that QEMU does not open."""
    paths = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    clone = chain_builder.overlay("clone.qcow2", paths[0])
    write(clone, 0x77, 0, MiB // 2)
    return [*paths, clone]


@pytest.fixture
def vm(layers: list[Path], tmp_path: Path) -> Iterator[QemuVM]:
    with running_vm(layers[:3], tmp_path) as machine:
        yield machine


def online(vm: QemuVM, **options: object) -> CommitPlan:
    graph = QmpEngine().read_graph(QmpTarget(vm.socket))
    request = CommitRequest(image=root_for(graph).path, engine="qmp", **options)  # type: ignore[arg-type]
    return make_plan(graph, request)


def test_active_commit_on_a_running_vm_gives_lower_bounds_and_says_why(
    vm: QemuVM, layers: list[Path], tmp_path: Path
) -> None:
    vm.execute("cont")  # the guest runs: it may write top while the job copies it
    plan = online(vm, active=True, on_ready=OnReady.PIVOT)
    assert not plan.bytes_to_copy_exact
    assert [(os.path.basename(a.image), a.exact) for a in plan.at_risk] == [("clone.qcow2", False)]
    assert all(not a.exact for a in plan.invalid)
    assert any("lower bounds" in note for note in plan.notes)
    document = plan.to_json()
    assert document["bytes_to_copy_exact"] is False and document["scanned"] == [str(tmp_path)]
    from backchain.core.describe import consequences

    assert any("at least" in line and "clone.qcow2" in line for line in consequences(plan))
    sink = RecordingSink(on_ready=OnReady.PIVOT)
    commit_and_measure(plan, [layers[3]], tmp_path, vm.socket, sink, vm.stop)


def test_intermediate_commit_on_a_running_vm_stays_exact(
    vm: QemuVM, layers: list[Path], tmp_path: Path
) -> None:
    plan = online(vm, top="mid", base="base")
    assert plan.bytes_to_copy_exact and plan.bytes_to_copy == 3 * MiB
    # changed = mid's [1,2) and [33,35) MiB; the clone hides none of it.
    assert [(os.path.basename(a.image), a.bytes, a.exact) for a in plan.at_risk] == [
        ("clone.qcow2", 3 * MiB, True)
    ]
    commit_and_measure(plan, [layers[3]], tmp_path, vm.socket, settle=vm.stop)


def test_online_delete_names_the_bitmaps_and_snapshots_of_the_merged_layer(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    run(["qemu-img", "snapshot", "-c", "old", str(mid)])
    run(["qemu-img", "bitmap", "--add", str(mid), "inc0"])
    # QEMU opens the backing files itself, so it drops mid after the job and DELETE can run.
    with running_vm([base, mid, top], tmp_path, explicit_backing=False) as machine:
        plan = online(machine, top=str(mid), base=str(base), delete=True)
        assert [(os.path.basename(x.image), x.kind.value, x.name) for x in plan.lost] == [
            ("mid.qcow2", "internal-snapshot", "old"),
            ("mid.qcow2", "bitmap", "inc0"),
        ]
        commit_and_measure(plan, [top], tmp_path, machine.socket, settle=machine.stop)
    assert not mid.exists()
