"""Online pulls (block-stream) against a real, paused qemu-system-x86_64."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backchain.core.errors import CancelledError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, Operation
from backchain.engines.base import QmpTarget
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.engine import QmpEngine
from backchain.engines.qmp.graph import read_qmp_graph, root_for
from backchain.engines.qmp.job import QmpJobControl
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan
from tests.images import (
    ChainBuilder,
    MiB,
    backing_name,
    checksums,
    compare,
    reads,
    snapshot_copy,
    write,
)
from tests.images import backchain as cli
from tests.integration.test_qmp_commit import (
    P_BASE,
    P_MID,
    P_TOP,
    assert_view_intact,
    big_mid,
    chain_names,
)
from tests.qemu_vm import QemuVM, running_vm


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


def guest_view_reads(vm: QemuVM, node: str, checks: list[tuple[int, int, int]]) -> list[bool]:
    """Read ``node`` as the guest sees it, through QEMU's own block layer: an NBD export of the
    live node (HMP qemu-io prints nothing back on QEMU 7.2), read with qemu-io -P."""
    sock = os.path.join(os.path.dirname(vm.socket), "view.sock")
    vm.execute("nbd-server-start", {"addr": {"type": "unix", "data": {"path": sock}}})
    vm.execute("block-export-add", {"type": "nbd", "id": "view", "node-name": node,
                                    "name": "view", "writable": False})  # fmt: skip
    try:
        results = []
        for pattern, offset, length in checks:
            read = subprocess.run(
                ["qemu-io", "-r", "-f", "raw", f"nbd+unix:///view?socket={sock}",
                 "-c", f"read -P 0x{pattern:02x} {offset} {length}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            results.append(read.returncode == 0 and "verification failed" not in read.stdout)
        return results
    finally:
        vm.execute("block-export-del", {"id": "view"})
        vm.execute("nbd-server-stop")


def assert_guest_view_intact(vm: QemuVM, node: str = "top") -> None:
    """The guest view of test_qmp_commit's chain: base at 0, mid at 1 MiB, top at 2 MiB."""
    checks = [(P_BASE, 0, MiB), (P_MID, MiB, MiB), (P_TOP, 2 * MiB, MiB),
              (P_TOP, 34 * MiB, 2 * MiB), (P_MID, 0, MiB)]  # fmt: skip
    # The last one must fail: the check itself can tell a wrong view.
    assert guest_view_reads(vm, node, checks) == [True, True, True, True, False]


def test_pull_delete_removes_only_the_deletable_layers_after_the_verify(
    chain_builder: ChainBuilder, layers: list[Path], tmp_path: Path
) -> None:
    """Flatten top with --delete: mid (only top used it) goes; base, which a sibling in the same
    directory still reads, is kept; every other file stays byte-identical."""
    base, mid, top = layers
    sibling = chain_builder.overlay("sib.qcow2", base)
    write(sibling, 0x77, 8 * MiB, MiB)
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    sums = checksums([base, sibling])
    # QEMU opens the backing files itself, so it lets go of mid once the stream ends.
    with running_vm(layers, tmp_path, explicit_backing=False) as vm:
        assert_guest_view_intact(vm)
        planned = cli("plan", "--pull", "--qmp", vm.socket, "--delete", "--json")
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        assert document["removed"] == [str(mid), str(base)]
        assert document["deletable"] == [str(mid)] and document["deleted"] == [str(mid)]
        assert document["at_risk"] == [] and document["verify"] is True
        assert any(f"'{sibling}' still depends on it" in note for note in document["notes"])
        # block-stream, QEMU's flush, qemu-img compare, rm: the verify comes before any delete.
        kinds = [step["execute"] if isinstance(step, dict) else
                 step[1] if "qemu-img" in step[0] else step[0]
                 for step in document["steps"]]  # fmt: skip
        assert kinds == ["block-stream", "human-monitor-command", "compare", "rm"]
        assert document["steps"][1]["arguments"] == {"command-line": "qemu-io top flush"}
        assert document["steps"][3] == ["rm", "-f", "--", str(mid)]
        result = cli("pull", "--qmp", vm.socket, "--delete", "--yes")
        assert result.returncode == 0, result.stderr
        assert not mid.exists()
        assert base.exists() and sibling.exists()
        assert_guest_view_intact(vm)
        live = read_qmp_graph(vm.socket)
        assert [layer.path for layer in live.chain(str(top))] == [str(top)]
    assert backing_name(top) is None
    assert compare(top, before)
    assert_view_intact(top)
    assert checksums([base, sibling]) == sums
    assert reads(sibling, 0x77, 8 * MiB, MiB) and reads(sibling, P_BASE, 0, MiB)


def test_pull_delete_onto_a_base_keeps_a_removed_layer_a_sibling_uses(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    """base <- low <- high <- top, and sib on low: pulling high and low into top onto base
    deletes high only; low, which sib still reads, stays, and so does every other byte."""
    layers = chain_builder.chain(["base.qcow2", "low.qcow2", "high.qcow2", "top.qcow2"])
    base, low, high, top = layers
    sibling = chain_builder.overlay("sib.qcow2", low)
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    sums = checksums([base, low, sibling])
    view = [(ChainBuilder.pattern(i), i * MiB, MiB) for i in range(4)]
    wrong = [(ChainBuilder.pattern(0), 2 * MiB, MiB)]  # high's data is there, not base's
    with running_vm(layers, tmp_path, explicit_backing=False) as vm:
        assert guest_view_reads(vm, "top", view + wrong) == [True] * 4 + [False]
        # The engine's own read: the live graph plus the siblings found in the same folder.
        graph = QmpEngine().read_graph(QmpTarget(vm.socket))
        request = CommitRequest(image=str(top), engine="qmp", operation=Operation.PULL,
                                base=str(base), delete=True)  # fmt: skip
        plan = make_plan(graph, request)
        assert plan.merged == (str(high), str(low))
        assert plan.deletable == (str(high),) and plan.deleted == (str(high),)
        assert plan.at_risk == ()
        assert any(f"{low} is kept: '{sibling}' still depends on it" in n for n in plan.notes)
        sink = RecordingSink()
        run_plan(plan, sink, CancelToken(), vm.socket)
        assert sink.outcome is not None and sink.outcome[0], sink.outcome
        assert "verify" in {phase for _, _, phase in sink.progress}
        assert f"QEMU flushed {top} to disk" in sink.log and f"deleted {high}" in sink.log
        assert sink.log.index(f"QEMU flushed {top} to disk") < sink.log.index(f"deleted {high}")
        assert not high.exists() and low.exists()
        assert guest_view_reads(vm, "top", view + wrong) == [True] * 4 + [False]
        live = read_qmp_graph(vm.socket)
        assert [layer.path for layer in live.chain(str(top))] == [str(top), str(base)]
        del graph
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert backing_name(top) == "base.qcow2"
    assert compare(top, before)
    assert checksums([base, low, sibling]) == sums


def test_pull_delete_verify_that_finds_a_difference_deletes_nothing(
    layers: list[Path], tmp_path: Path
) -> None:
    """The verify is real: when top no longer reads like its old chain (mid was written between
    the stream and the verify), `backchain pull --qmp --delete` keeps every file and says so."""
    base, mid, top = layers
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "BACKCHAIN_FAULT_PAUSE": "before:verify",
        "BACKCHAIN_FAULT_PAUSE_FILE": str(marker),
        "BACKCHAIN_STATE_DIR": str(tmp_path / "s"),
    }
    with running_vm(layers, tmp_path, explicit_backing=False) as vm:
        child = subprocess.Popen(
            [sys.executable, "-m", "backchain", "pull", "--qmp", vm.socket, "--delete", "--yes"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while not marker.exists() and child.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), child.communicate()
        # QEMU let go of mid after the stream; it changes behind the plan's back.
        write(mid, 0x99, 4 * MiB, MiB)
        sums = checksums([base, mid])
        marker.unlink()
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 1, err
        assert "top.qcow2 does not read as it did on its old chain" in err
        assert "nothing was deleted" in err
        assert mid.exists() and base.exists() and checksums([base, mid]) == sums
    assert backing_name(top) is None
