"""Which online figures are exact: the layer facts an engine records, read by the planner."""

from __future__ import annotations

from backchain.core import plan as planner
from backchain.core.graph import ImageGraph, LiveWrites
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady
from backchain.core.valueclass import replace
from backchain.engines.libvirt.steps import RULES as LIBVIRT_RULES
from backchain.engines.qmp.engine import RULES as QMP_RULES
from backchain.engines.qmp.graph import written_nodes
from backchain.engines.qmp.live_alloc import on_this_machine
from tests.unit.test_plan import MiB, layer


def graph(fact: LiveWrites | None) -> ImageGraph:
    """base <- active, and a clone of base that exposes everything active writes."""
    active = layer("active", "base", (0, 9))
    return ImageGraph([layer("base", None, (0, 8)), replace(active, live_writes=fact),
                       layer("clone", "base")])  # fmt: skip


def active_commit(g: ImageGraph, rules: planner.PlanRules = QMP_RULES) -> CommitPlan:
    request = CommitRequest(image="/img/active", engine=EngineKind.QMP, active=True,
                            on_ready=OnReady.PIVOT)  # fmt: skip
    return planner.plan(g, request, rules)


def test_an_allocation_read_from_qemu_while_paused_is_exact_and_says_so() -> None:
    plan = active_commit(graph(LiveWrites(True, "read from QEMU itself while paused")))
    assert (plan.bytes_to_copy, plan.bytes_to_copy_exact) == (9 * MiB, True)
    assert [(a.bytes, a.exact) for a in plan.at_risk] == [(9 * MiB, True)]
    assert "read from QEMU itself while paused" in plan.notes


def test_a_running_guest_or_a_disk_reading_gives_lower_bounds_with_its_reason() -> None:
    plan = active_commit(graph(LiveWrites(False, "the guest keeps writing: lower bounds")))
    assert not plan.bytes_to_copy_exact and not plan.at_risk[0].exact
    assert "the guest keeps writing: lower bounds" in plan.notes


def test_without_a_fact_the_engines_own_reason_is_given() -> None:
    plan = active_commit(graph(None), LIBVIRT_RULES)
    assert not plan.bytes_to_copy_exact
    assert any("tainting the domain" in note for note in plan.notes)


def test_an_intermediate_commit_below_the_written_layer_stays_exact() -> None:
    g = graph(LiveWrites(False, "lower bounds")).with_layers(
        [layer("mid", "base", (20, 21)), replace(layer("active", "mid", (0, 9)),
                                                 live_writes=LiveWrites(False, "lower bounds"))]
    )  # fmt: skip
    request = CommitRequest(image="/img/active", engine=EngineKind.QMP, top="/img/mid")
    plan = planner.plan(g, request, QMP_RULES)
    assert plan.bytes_to_copy_exact and all(a.exact for a in plan.at_risk)
    assert "lower bounds" not in plan.notes


def test_only_a_devices_top_image_counts_as_written() -> None:
    nodes = [
        {"node-name": "top", "drv": "qcow2", "ro": False, "file": "/img/top.qcow2"},
        {"node-name": "top-file", "drv": "file", "ro": False, "file": "/img/top.qcow2"},
        # -blockdev opens a backing node read-write unless told otherwise; nothing writes it.
        {"node-name": "base", "drv": "qcow2", "ro": False, "file": "/img/base.qcow2"},
    ]
    blocks = [{"device": "", "qdev": "/machine/peripheral/vd0/virtio-backend",
               "inserted": {"node-name": "top"}}]  # fmt: skip
    assert written_nodes(nodes, blocks) == {"/img/top.qcow2": "top"}
    assert written_nodes([{**nodes[0], "ro": True}], blocks) == {}


def test_qmp_over_tcp_to_another_host_cannot_reach_qemus_nbd_socket() -> None:
    assert on_this_machine("/run/vm/qmp.sock")
    assert on_this_machine("127.0.0.1:4444") and on_this_machine("localhost:4444")
    assert not on_this_machine("10.1.2.3:4444")
