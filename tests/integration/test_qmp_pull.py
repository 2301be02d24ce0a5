"""Online pulls (block-stream) against a real, paused qemu-system-x86_64."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backchain.core.errors import CancelledError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, Operation
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.graph import read_qmp_graph, root_for
from backchain.engines.qmp.job import QmpJobControl
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan
from tests.images import ChainBuilder, MiB, backing_name, checksums, compare, snapshot_copy
from tests.images import backchain as cli
from tests.integration.test_qmp_commit import assert_view_intact, big_mid, chain_names
from tests.qemu_vm import running_vm


@pytest.fixture
def layers(chain_builder: ChainBuilder) -> list[Path]:
    """base <- mid <- top, relative backing names; layer i owns i MiB and 32 MiB + 2i MiB."""
    return chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])


def online_pull(socket: str, **options: object) -> tuple[ImageGraph, CommitPlan]:
    graph = read_qmp_graph(socket)
    request = CommitRequest(image=root_for(graph).path, engine="qmp", operation=Operation.PULL,
                            **options)  # type: ignore[arg-type]  # fmt: skip
    return graph, make_plan(graph, request)


def test_stream_into_the_active_layer_onto_base(layers: list[Path], tmp_path: Path) -> None:
    base, mid, top = layers
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    sums = checksums([base, mid])
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_pull(vm.socket, base="base")
        arguments = plan.steps[0].call["arguments"]  # type: ignore[index]
        assert plan.steps[0].call["execute"] == "block-stream"  # type: ignore[index]
        assert arguments["device"] == "top" and arguments["base-node"] == "base"
        assert arguments["backing-file"] == "base.qcow2"
        sink = RecordingSink()
        run_plan(plan, sink, CancelToken(), vm.socket)
        assert sink.outcome is not None and sink.outcome[0], sink.outcome
        assert sink.progress[-1][0] == sink.progress[-1][1]
        assert {phase for _, _, phase in sink.progress} == {"pull"}
        live = read_qmp_graph(vm.socket)
        assert [layer.node_name for layer in live.chain(str(top))] == ["top", "base"]
        assert vm.execute("query-jobs") == []
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert backing_name(top) == "base.qcow2"
    assert compare(top, before)
    assert_view_intact(top)
    assert checksums([base, mid]) == sums


def test_stream_without_base_makes_top_standalone(layers: list[Path], tmp_path: Path) -> None:
    base, mid, top = layers
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    sums = checksums([base, mid])
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_pull(vm.socket)
        assert "base-node" not in plan.steps[0].call["arguments"]  # type: ignore[index]
        run_plan(plan, RecordingSink(), CancelToken(), vm.socket)
    assert backing_name(top) is None
    assert compare(top, before)
    assert checksums([base, mid]) == sums


def test_stream_into_an_intermediate_node(layers: list[Path], tmp_path: Path) -> None:
    _base, mid, top = layers
    mid_before = snapshot_copy(mid, tmp_path / "mid-before.qcow2")
    top_before = snapshot_copy(top, tmp_path / "top-before.qcow2")
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_pull(vm.socket, top="mid")
        assert plan.steps[0].call["arguments"]["device"] == "mid"  # type: ignore[index]
        run_plan(plan, RecordingSink(), CancelToken(), vm.socket)
    assert backing_name(mid) is None
    assert chain_names(top) == ["top.qcow2", "mid.qcow2"]
    assert compare(mid, mid_before) and compare(top, top_before)


def test_cancel_on_first_progress_then_rerun(layers: list[Path], tmp_path: Path) -> None:
    big_mid(layers)
    top = layers[2]
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_pull(vm.socket, base="base", rate=MiB)
        cancel = CancelToken()

        class CancellingSink(RecordingSink):
            def advanced(self, done: int, total: int, phase: str) -> None:
                super().advanced(done, total, phase)
                cancel.cancel()

        with pytest.raises(CancelledError) as caught:
            run_plan(plan, CancellingSink(), cancel, vm.socket)
        assert (
            "reads correctly" in caught.value.state or "Nothing was written" in caught.value.state
        )
        assert vm.execute("query-jobs") == []
        live = read_qmp_graph(vm.socket)
        assert [layer.node_name for layer in live.chain(str(top))] == ["top", "mid", "base"]
        _, again = online_pull(vm.socket, base="base")
        run_plan(again, RecordingSink(), CancelToken(), vm.socket)
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert compare(top, before)


def test_speed_changes_mid_job(layers: list[Path], tmp_path: Path) -> None:
    big_mid(layers)
    top = layers[2]
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_pull(vm.socket, base="base", rate=2 * MiB)
        control = QmpJobControl(vm.socket)

        class SpeedingSink(RecordingSink):
            def advanced(self, done: int, total: int, phase: str) -> None:
                super().advanced(done, total, phase)
                if len({d for d, _, _ in self.progress if d > 0}) == 2:
                    control.set_speed(0)

        sink = SpeedingSink()
        run_plan(plan, sink, CancelToken(), control)
        assert any("bandwidth set to 0" in line for line in sink.log)
        assert len({done for done, _, _ in sink.progress}) >= 3
    assert compare(top, before)


def test_base_not_below_top_is_refused_online(layers: list[Path], tmp_path: Path) -> None:
    with running_vm(layers, tmp_path) as vm:
        with pytest.raises(PlanError, match="could not find image 'top' beneath 'mid'"):
            online_pull(vm.socket, top="mid", base="top")
        with pytest.raises(PlanError, match="could not find image 'nope' in chain"):
            online_pull(vm.socket, top="nope")


def test_backchain_pull_qmp_from_the_command_line(layers: list[Path], tmp_path: Path) -> None:
    top = layers[2]
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    with running_vm(layers, tmp_path) as vm:
        planned = cli("plan", "--pull", "--qmp", vm.socket, "--base", "base", "--json")
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        assert document["operation"] == "pull" and document["engine"] == "qmp"
        assert document["steps"][0]["execute"] == "block-stream"
        assert document["alternative"]["operation"] == "commit"
        result = cli("pull", "--qmp", vm.socket, "--base", "base", "--rate", str(64 * MiB), "--yes")
        assert result.returncode == 0, result.stderr
        refused = cli("pull", "--qmp", vm.socket, "--base", "top", "--yes")
        assert refused.returncode == 2 and "beneath" in refused.stderr
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert compare(top, before)
