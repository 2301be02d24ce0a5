"""QMP over TCP (host:port), as "Connect to QEMU…" and --qmp accept it, against a real QEMU."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from backchain.core.model import CommitRequest
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.graph import read_qmp_graph, root_for
from backchain.engines.registry import make_plan
from backchain.engines.runner import run_plan as run_qmp_plan
from tests.images import ChainBuilder, MiB, backchain, backing_name, reads
from tests.qemu_vm import running_vm


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def test_intermediate_commit_over_tcp(chain_builder: ChainBuilder, tmp_path: Path) -> None:
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    with running_vm([base, mid, top], tmp_path, tcp_port=free_port()) as vm:
        shown = backchain("plan", "--qmp", vm.address, "--top", "mid", "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["engine"] == "qmp"
        graph = read_qmp_graph(vm.address)
        assert {layer.node_name for layer in graph} >= {"base", "mid", "top"}
        request = CommitRequest(image=root_for(graph).path, top="mid", engine="qmp")
        plan = make_plan(graph, request)
        sink = RecordingSink()
        run_qmp_plan(plan, sink, CancelToken(), vm.address)
        assert sink.outcome is not None and sink.outcome[0]
    assert backing_name(top) == "base.qcow2"
    for index in range(3):
        assert reads(top, ChainBuilder.pattern(index), index * MiB, MiB)
