"""Online commits against a real, paused qemu-system-x86_64: intermediate, active, cancel, speed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchain.core.errors import CancelledError, EngineError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, OnReady
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.graph import read_qmp_graph, root_for
from backchain.engines.qmp.job import QmpJobControl
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan as run_qmp_plan
from tests.images import ChainBuilder, MiB, backing_name, chain_info, checksums, reads, write
from tests.qemu_vm import QemuVM, running_vm

P_BASE, P_MID, P_TOP = 0x11, 0x22, 0x33


@pytest.fixture
def layers(chain_builder: ChainBuilder) -> list[Path]:
    """base <- mid <- top, relative backing names; layer i owns i MiB and 32 MiB + 2i MiB."""
    return chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])


@pytest.fixture
def vm(layers: list[Path], tmp_path: Path) -> Iterator[QemuVM]:
    """QEMU with one explicit node per layer (base, mid, top) on virtio-blk vd0."""
    with running_vm(layers, tmp_path) as machine:
        yield machine


def online_plan(vm: QemuVM, **options: object) -> tuple[ImageGraph, CommitPlan]:
    """Read the live graph and plan a request for the chain attached to vd0."""
    graph = read_qmp_graph(vm.socket)
    root = root_for(graph)
    request = CommitRequest(image=root.path, engine="qmp", **options)  # type: ignore[arg-type]
    return graph, make_plan(graph, request)


def chain_names(image: Path) -> list[str]:
    """The file names of qemu-img info --backing-chain; fails on any json: pseudo-name."""
    entries = chain_info(image)
    for entry in entries:
        assert not str(entry.get("backing-filename", "")).startswith("json:"), entry
    return [os.path.basename(str(entry["filename"])) for entry in entries]


def assert_view_intact(top: Path) -> None:
    """The top's view: base at 0, mid at 1 MiB, top at 2 MiB."""
    assert reads(top, P_BASE, 0, MiB)
    assert reads(top, P_MID, MiB, MiB)
    assert reads(top, P_TOP, 2 * MiB, MiB)
    assert reads(top, P_TOP, 34 * MiB, 2 * MiB)


def test_live_graph_has_node_names_real_paths_devices_and_extents(
    vm: QemuVM, layers: list[Path]
) -> None:
    graph = read_qmp_graph(vm.socket)
    base, mid, top = (str(p) for p in layers)
    assert sorted(graph.paths) == sorted([base, mid, top])
    assert graph.find("mid") is not None and graph.find("mid").path == mid  # type: ignore[union-attr]
    assert graph.find("vd0").path == top  # type: ignore[union-attr]
    assert [layer.node_name for layer in graph.chain(top)] == ["top", "mid", "base"]
    assert graph.layer(top).backing_name == "mid.qcow2"
    assert graph.layer(mid).extents is not None
    assert graph.layer(mid).allocated_bytes == 3 * MiB


def test_intermediate_commit_mid_into_base_keeps_relative_backing(
    vm: QemuVM, layers: list[Path]
) -> None:
    base, _mid, top = layers
    _, plan = online_plan(vm, top="mid", base="base")
    arguments = plan.steps[0].to_json()["arguments"]  # type: ignore[call-overload]
    assert arguments["backing-file"] == "base.qcow2"
    sink = RecordingSink()
    run_qmp_plan(plan, sink, CancelToken(), vm.socket)
    assert sink.outcome is not None and sink.outcome[0]
    assert sink.progress and sink.progress[-1][0] == sink.progress[-1][1]
    live = read_qmp_graph(vm.socket)
    assert [layer.node_name for layer in live.chain(str(top))] == ["top", "base"]
    vm.stop()
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert backing_name(top) == "base.qcow2"
    assert reads(base, P_MID, MiB, MiB) and reads(base, P_BASE, 0, MiB)
    assert_view_intact(top)


def test_active_commit_with_pivot_makes_base_the_active_layer(
    vm: QemuVM, layers: list[Path]
) -> None:
    base, _mid, _top = layers
    _, plan = online_plan(vm, active=True, on_ready=OnReady.PIVOT)
    assert plan.active_commit and "backing-file" not in plan.steps[0].call["arguments"]  # type: ignore[index]
    sink = RecordingSink(on_ready=OnReady.PIVOT)
    run_qmp_plan(plan, sink, CancelToken(), vm.socket)
    assert ("ready", OnReady.PIVOT) in sink.events
    blocks = vm.execute("query-block")
    assert blocks[0]["inserted"]["node-name"] == "base"  # type: ignore[index]
    vm.stop()
    assert chain_names(base) == ["base.qcow2"]
    assert_view_intact(base)


def test_active_commit_keep_overlay_leaves_top_active_and_base_a_copy(
    vm: QemuVM, layers: list[Path]
) -> None:
    base, _mid, top = layers
    _, plan = online_plan(vm, active=True, on_ready=OnReady.KEEP_OVERLAY)
    sink = RecordingSink(on_ready=OnReady.ASK)
    run_qmp_plan(plan, sink, CancelToken(), vm.socket)
    assert sink.outcome is not None and sink.outcome[0]
    blocks = vm.execute("query-block")
    assert blocks[0]["inserted"]["node-name"] == "top"  # type: ignore[index]
    vm.stop()
    assert chain_names(top) == ["top.qcow2", "mid.qcow2", "base.qcow2"]
    assert_view_intact(base)
    assert_view_intact(top)


def test_ready_waits_while_the_sink_asks_and_the_choice_comes_from_another_thread(
    vm: QemuVM, layers: list[Path]
) -> None:
    base, _mid, top = layers
    _, plan = online_plan(vm, active=True)
    control = QmpJobControl(vm.socket)
    with pytest.raises(EngineError, match="not ready"):
        control.choose(OnReady.PIVOT)

    class AskingSink(RecordingSink):
        asked = 0

        def ready(self) -> OnReady:
            self.asked += 1
            if self.asked == 3:  # the user answers after a while, as a dialog would
                control.choose(OnReady.KEEP_OVERLAY)
            return OnReady.ASK

    sink = AskingSink()
    run_qmp_plan(plan, sink, CancelToken(), control)
    assert sink.asked == 3
    vm.stop()
    assert chain_names(top) == ["top.qcow2", "mid.qcow2", "base.qcow2"]
    assert_view_intact(base)


def big_mid(layers: list[Path]) -> None:
    """Give mid 8 MiB more data, so that a throttled commit takes a few seconds."""
    write(layers[1], P_MID, 40 * MiB, 8 * MiB)


def test_cancel_while_running_leaves_the_chain_unchanged(
    layers: list[Path], tmp_path: Path
) -> None:
    big_mid(layers)
    _base, _mid, top = layers
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_plan(vm, top="mid", rate=2 * MiB)
        cancel = CancelToken()

        class CancellingSink(RecordingSink):
            def advanced(self, done: int, total: int, phase: str) -> None:
                super().advanced(done, total, phase)
                if done > 0:
                    cancel.cancel()

        sink = CancellingSink()
        with pytest.raises(CancelledError) as caught:
            run_qmp_plan(plan, sink, cancel, vm.socket)
        assert "still read correctly" in caught.value.state
        assert vm.execute("query-jobs") == []
    assert chain_names(top) == ["top.qcow2", "mid.qcow2", "base.qcow2"]
    assert_view_intact(top)
    assert reads(top, P_MID, 40 * MiB, 8 * MiB)


def test_speed_throttling_gives_several_updates_and_can_change_mid_job(
    layers: list[Path], tmp_path: Path
) -> None:
    big_mid(layers)
    base, _mid, top = layers
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_plan(vm, top="mid", base="base", rate=4 * MiB)
        assert plan.steps[0].call["arguments"]["speed"] == 4 * MiB  # type: ignore[index]
        control = QmpJobControl(vm.socket)

        class SpeedingSink(RecordingSink):
            def advanced(self, done: int, total: int, phase: str) -> None:
                super().advanced(done, total, phase)
                if len({d for d, _, _ in self.progress if d > 0}) == 3:
                    control.set_speed(0)  # from the job's thread here; any thread may call it

        sink = SpeedingSink()
        run_qmp_plan(plan, sink, CancelToken(), control)
        distinct = sorted({done for done, _, _ in sink.progress})
        assert len(distinct) >= 4
        assert distinct == sorted(distinct) and sink.progress[-1][0] == sink.progress[-1][1]
        assert all(phase == "commit" for _, _, phase in sink.progress)
        assert any("bandwidth set to 0" in line for line in sink.log)
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert reads(base, P_MID, 40 * MiB, 8 * MiB)
    assert_view_intact(top)


def test_qemu_killed_mid_job_gives_a_clear_error_and_files_stay_readable(
    layers: list[Path], tmp_path: Path
) -> None:
    big_mid(layers)
    _base, mid, top = layers
    with running_vm(layers, tmp_path) as vm:
        _, plan = online_plan(vm, top="mid", rate=2 * MiB)

        class KillingSink(RecordingSink):
            def advanced(self, done: int, total: int, phase: str) -> None:
                super().advanced(done, total, phase)
                if done > 0:
                    vm.kill()

        with pytest.raises(EngineError) as caught:
            run_qmp_plan(plan, KillingSink(), CancelToken(), vm.socket)
        assert vm.socket in caught.value.message
        assert "QEMU exited or crashed" in caught.value.message
        # QEMU's first progress may come from skipping a region mid does not allocate: then
        # nothing was written yet, and the runner (which compares base before and after) says so.
        state = caught.value.state
        assert "still read correctly" in state or "Nothing was written" in state, state
    assert chain_names(top) == ["top.qcow2", "mid.qcow2", "base.qcow2"]
    assert_view_intact(top)
    assert reads(mid, P_MID, 40 * MiB, 8 * MiB)


def test_wrong_node_name_is_refused_by_the_planner_and_by_qemu(
    vm: QemuVM, layers: list[Path]
) -> None:
    with pytest.raises(PlanError, match="could not find image 'nosuch' in chain for 'vd0'"):
        online_plan(vm, top="nosuch")
    with pytest.raises(PlanError, match="no device or node named 'nosuch'"):
        read_qmp_graph(vm.socket, device="nosuch")
    # A plan made before the node went away: QEMU's own message reaches the user.
    _, plan = online_plan(vm, top="mid")
    call = dict(plan.steps[0].call or {})
    call["arguments"] = {**call["arguments"], "top-node": "gone"}
    stale = type(plan.steps[0])("block-commit", call=call)
    from backchain.core.valueclass import replace

    with pytest.raises(EngineError, match=r"QEMU refused block-commit: .*gone"):
        run_qmp_plan(replace(plan, steps=(stale,)), RecordingSink(), CancelToken(), vm.socket)
    vm.stop()
    assert chain_names(layers[2]) == ["top.qcow2", "mid.qcow2", "base.qcow2"]
    assert_view_intact(layers[2])


def test_top_and_base_reversed_is_refused(vm: QemuVM) -> None:
    with pytest.raises(
        PlanError, match="could not find image 'top' beneath 'mid' in chain for 'vd0'"
    ):
        online_plan(vm, top="mid", base="top", active=False)


def test_active_layer_needs_the_active_flag_online(vm: QemuVM) -> None:
    with pytest.raises(PlanError, match="commit of 'top' active layer requires active flag"):
        online_plan(vm)
    with pytest.raises(PlanError, match="active commit requested but 'mid' is not active"):
        online_plan(vm, top="mid", active=True)


def test_a_peer_that_never_answers_times_out(vm: QemuVM) -> None:
    vm.freeze()
    with pytest.raises(EngineError, match="did not answer within 1 s"):
        read_qmp_graph(vm.socket, timeout=1.0)


def test_delete_online_waits_until_qemu_closes_the_merged_file(
    layers: list[Path], tmp_path: Path
) -> None:
    _base, mid, top = layers
    # QEMU opens the backing files itself (automatic node names), so it drops mid after the job.
    with running_vm(layers, tmp_path, explicit_backing=False) as vm:
        graph, plan = online_plan(vm, top=str(mid), delete=True)
        assert graph.layer(str(mid)).node_name.startswith("#block")  # type: ignore[union-attr]
        run_qmp_plan(plan, RecordingSink(), CancelToken(), vm.socket)
        assert not mid.exists()
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert_view_intact(top)


def test_delete_online_removes_a_blockdev_node_that_nothing_uses_any_more(
    vm: QemuVM, layers: list[Path]
) -> None:
    """mid is a -blockdev node of its own, which QEMU keeps open after the job: it is removed
    (blockdev-del), and then its file. test_qmp_blockdev_delete.py has the node still in use."""
    _base, mid, top = layers
    _, plan = online_plan(vm, top="mid", delete=True)
    control = QmpJobControl(vm.socket)
    control.close_wait = 0.5
    sink = RecordingSink()
    run_qmp_plan(plan, sink, CancelToken(), control)
    assert "QEMU removed node mid (blockdev-del): nothing used it any more" in sink.log
    assert not mid.exists()
    vm.stop()
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert_view_intact(top)


def test_write_errors_on_base_fail_the_job_with_qemus_message(
    layers: list[Path], tmp_path: Path
) -> None:
    base, mid, top = layers
    before = checksums([mid, top])
    # blkdebug makes every write to base.qcow2 fail with EIO inside QEMU: a real I/O error path.
    with running_vm(layers, tmp_path, failing_writes="base") as vm:
        graph, plan = online_plan(vm, top="mid")
        assert graph.find("base").path == str(base)  # type: ignore[union-attr]
        sink = RecordingSink()
        with pytest.raises(EngineError) as caught:
            run_qmp_plan(plan, sink, CancelToken(), vm.socket)
        assert caught.value.message.endswith(f"into {base} failed: Input/output error")
        assert "I/O error on write" in caught.value.stderr
        assert sink.outcome is not None and not sink.outcome[0]
        assert vm.execute("query-jobs") == []
    assert checksums([mid, top]) == before
    assert chain_names(top) == ["top.qcow2", "mid.qcow2", "base.qcow2"]
    assert_view_intact(top)
