"""Fault 5, online: QEMU killed mid-job, the QMP connection cut mid-job, a peer that accepts and
never answers, and a real I/O error inside QEMU (blkdebug) giving BLOCK_JOB_ERROR."""

from __future__ import annotations

import select
import socket
import threading
from pathlib import Path

import pytest

from backchain.core.errors import EngineError
from backchain.core.model import CommitPlan, CommitRequest
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.graph import read_qmp_graph, root_for
from backchain.engines.qmp.job import QmpJobControl
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan as run_qmp_plan
from tests.faults.helpers import MiB, Scene, record
from tests.images import compare, tree_checksums
from tests.qemu_vm import QemuVM, running_vm

NAMES = ["base", "snap1", "snap2", "active"]


def layers(scene: Scene) -> list[Path]:
    """The chain, bottom first, as QEMU opens it."""
    return [scene.p(f"{name}.qcow2") for name in NAMES]


def online_plan(vm: QemuVM, rate: int = 8 * MiB) -> CommitPlan:
    """snap2 into base (an intermediate commit: active is re-pointed by QEMU)."""
    graph = read_qmp_graph(vm.socket)
    request = CommitRequest(image=root_for(graph).path, engine="qmp", top="snap2", base="base",
                            rate=rate)  # fmt: skip
    return make_plan(graph, request)


class KillingSink(RecordingSink):
    """Runs ``fault`` once, as soon as the job has copied something."""

    def __init__(self, fault: object) -> None:
        super().__init__()
        self.fault = fault
        self.fired = False

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Fire on the first real progress."""
        super().advanced(done, total, phase)
        if done > 0 and not self.fired:
            self.fired = True
            self.fault()  # type: ignore[operator]


def survived(scene: Scene, fault: str, rerun_dir: Path) -> None:
    """Files check out after the fault; then a fresh QEMU re-runs the commit to completion."""
    lost = scene.active_lost()
    assert lost == 0
    assert scene.all_clean() == []
    assert scene.unchanged_outside_plan()
    with running_vm(layers(scene), rerun_dir) as vm:
        run_qmp_plan(online_plan(vm, rate=0), RecordingSink(), CancelToken(), vm.socket)
    assert compare(scene.base, scene.keep / "snap2-view.qcow2")
    assert scene.active_lost() == 0 and scene.all_clean() == []
    assert scene.unchanged_outside_plan()
    record(fault, True, lost)


def test_qemu_killed_mid_job(tmp_path: Path) -> None:
    """SIGKILL of QEMU while it copies: a clear error naming the socket; a re-run completes."""
    scene = Scene.build(tmp_path)
    with running_vm(layers(scene), tmp_path) as vm:
        plan = online_plan(vm)
        with pytest.raises(EngineError) as caught:
            run_qmp_plan(plan, KillingSink(vm.kill), CancelToken(), vm.socket)
    assert vm.socket in caught.value.message and "QEMU exited or crashed" in caught.value.message
    assert "still read correctly" in caught.value.state
    (tmp_path / "rerun").mkdir()
    survived(scene, "5. online (QMP)", tmp_path / "rerun")


class CuttingProxy:
    """A unix-socket proxy in front of QEMU's QMP socket whose connections can be cut for real."""

    def __init__(self, upstream: str, path: Path) -> None:
        self.upstream = upstream
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.cut.is_set():
            readable, _, _ = select.select([self.server], [], [], 0.05)
            if not readable:
                continue
            client, _ = self.server.accept()
            qemu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            qemu.connect(self.upstream)
            threading.Thread(target=self._pump, args=(client, qemu), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self.cut.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.05)
                for side in readable:
                    data = side.recv(65536)
                    if not data:
                        return
                    (b if side is a else a).sendall(data)
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        """Cut every connection and stop listening."""
        self.cut.set()
        self.thread.join(2)
        self.server.close()


def test_qmp_connection_closed_mid_job(tmp_path: Path) -> None:
    """The QMP connection drops while QEMU copies: a clear error, and every file still reads."""
    scene = Scene.build(tmp_path)
    with running_vm(layers(scene), tmp_path) as vm:
        plan = online_plan(vm)
        proxy = CuttingProxy(vm.socket, tmp_path / "proxy.sock")
        try:
            with pytest.raises(EngineError) as caught:
                run_qmp_plan(plan, KillingSink(proxy.close), CancelToken(), proxy.path)
        finally:
            proxy.close()
        assert str(tmp_path / "proxy.sock") in caught.value.message, caught.value.message
        # QEMU itself still runs the job, unfinalized; running the same plan again on a new
        # connection takes that job over and finishes it, instead of colliding with its id.
        sink = RecordingSink()
        run_qmp_plan(plan, sink, CancelToken(), vm.socket)
        assert any("continuing job" in line for line in sink.log), sink.log
        assert sink.outcome is not None and sink.outcome[0]
        assert vm.execute("query-jobs") == []
    lost = scene.active_lost()
    assert lost == 0 and scene.all_clean() == [] and scene.unchanged_outside_plan()
    assert compare(scene.base, scene.keep / "snap2-view.qcow2")
    record("5. online (QMP)", True, lost)


def test_peer_that_never_answers_times_out_clearly(tmp_path: Path) -> None:
    """A socket that accepts and stays silent: a timeout naming the address; nothing changes."""
    scene = Scene.build(tmp_path)
    path = str(tmp_path / "silent.sock")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(4)
    held: list[socket.socket] = []
    accepter = threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True)
    accepter.start()
    with running_vm(layers(scene), tmp_path) as vm:
        plan = online_plan(vm)
    before = tree_checksums(scene.dir)
    control = QmpJobControl(path, timeout=1.0)
    with pytest.raises(EngineError, match=r"did not answer within 1 s") as caught:
        run_qmp_plan(plan, RecordingSink(), CancelToken(), control)
    assert path in caught.value.message
    assert held, "the peer accepted the connection"
    assert tree_checksums(scene.dir) == before
    for connection in held:
        connection.close()
    silent.close()
    record("5. online (QMP)", True, scene.active_lost())


def test_io_error_inside_qemu_gives_block_job_error(tmp_path: Path) -> None:
    """blkdebug fails every write to base with EIO: QEMU's message reaches the user, with the
    BLOCK_JOB_ERROR detail; after the fault is gone, a re-run completes."""
    scene = Scene.build(tmp_path)
    with running_vm(layers(scene), tmp_path, names=NAMES, failing_writes="base") as vm:
        plan = online_plan(vm)
        with pytest.raises(EngineError) as caught:
            run_qmp_plan(plan, RecordingSink(), CancelToken(), vm.socket)
    assert caught.value.message.endswith(f"into {scene.base} failed: Input/output error")
    assert "I/O error on write" in caught.value.stderr
    (tmp_path / "rerun").mkdir()
    survived(scene, "5. online (QMP)", tmp_path / "rerun")


def test_an_interrupted_online_job_is_journalled_and_re_run_from_the_journal(
    tmp_path: Path,
) -> None:
    """QEMU dies mid-job: the journal says so; on a restarted QEMU the record re-runs the job."""
    from backchain.engines import journal
    from backchain.engines.runner import resume_job, run_plan

    scene = Scene.build(tmp_path)
    with running_vm(layers(scene), tmp_path) as vm:
        plan = online_plan(vm)
        with pytest.raises(EngineError):
            run_plan(plan, KillingSink(vm.kill), CancelToken(), vm.socket)
    records = journal.unfinished_jobs([str(scene.base)])
    assert len(records) == 1 and records[0].plan.engine == "qmp"
    message = journal.describe(records[0])
    assert message.startswith("A commit of snap2.qcow2 into base.qcow2 failed at"), message
    assert "active.qcow2 still reads correctly" in message
    assert scene.active_lost() == 0 and scene.all_clean() == []
    # The VM is started again on the same socket, as a user would; the record re-runs the job.
    with running_vm(layers(scene), tmp_path) as vm:
        sink = RecordingSink()
        resume_job(records[0], sink, CancelToken())
        assert sink.outcome is not None and sink.outcome[0]
    assert journal.unfinished_jobs([str(scene.base)]) == []
    assert compare(scene.base, scene.keep / "snap2-view.qcow2")
    lost = scene.active_lost()
    assert lost == 0 and scene.all_clean() == [] and scene.unchanged_outside_plan()
    record("5. online (QMP)", True, lost)
