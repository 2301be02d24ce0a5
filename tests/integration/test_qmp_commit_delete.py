"""Online commit --delete: QEMU flushes base and qemu-img compares it with top before any rm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_plan
from tests.images import ChainBuilder, MiB, checksums, reads, write
from tests.images import backchain as cli
from tests.integration.test_qmp_commit import assert_view_intact, chain_names, online_plan
from tests.qemu_vm import running_vm


def _kinds(steps: list[object]) -> list[str]:
    return [
        str(step["execute"]) if isinstance(step, dict)
        else str(step[1]) if "qemu-img" in str(step[0]) else str(step[0])  # type: ignore[index]
        for step in steps
    ]  # fmt: skip


def test_intermediate_commit_delete_flushes_base_and_verifies_before_rm(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    with running_vm([base, mid, top], tmp_path, explicit_backing=False) as vm:
        planned = cli("plan", "--qmp", vm.socket, "--top", str(mid), "--delete", "--json")
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        assert document["verify"] is True and document["deleted"] == [str(mid)]
        assert _kinds(document["steps"]) == ["block-commit", "human-monitor-command",
                                             "compare", "rm"]  # fmt: skip
        flush = document["steps"][1]["arguments"]["command-line"]
        assert flush.startswith("qemu-io ") and flush.endswith(" flush")
        compare = document["steps"][2]
        assert compare[-2:] == [str(mid), str(base)] and "-U" in compare

        graph, plan = online_plan(vm, top=str(mid), delete=True)
        sink = RecordingSink()
        run_plan(plan, sink, CancelToken(), vm.socket)
        assert sink.outcome is not None and sink.outcome[0], sink.outcome
        flushed, deleted = f"QEMU flushed {base} to disk", f"deleted {mid}"
        assert flushed in sink.log and deleted in sink.log
        assert sink.log.index(flushed) < sink.log.index(deleted)
        assert "verify" in {phase for _, _, phase in sink.progress}
        assert not mid.exists()
        # While QEMU still runs, base on disk already holds what mid held.
        assert reads(base, ChainBuilder.pattern(1), MiB, MiB)
        del graph
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert_view_intact(top)


def test_a_commit_verify_that_finds_a_difference_deletes_nothing(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    """mid changes between the commit and the verify: base no longer reads like it, so mid is
    kept and the message says why."""
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "BACKCHAIN_FAULT_PAUSE": "before:verify",
        "BACKCHAIN_FAULT_PAUSE_FILE": str(marker),
        "BACKCHAIN_STATE_DIR": str(tmp_path / "s"),
    }
    argv = [sys.executable, "-m", "backchain", "commit", "--qmp", "", "--top", str(mid),
            "--delete", "--yes"]  # fmt: skip
    with running_vm([base, mid, top], tmp_path, explicit_backing=False) as vm:
        argv[5] = vm.socket
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        while not marker.exists() and child.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), child.communicate()
        write(mid, 0x99, 4 * MiB, MiB)  # QEMU let go of mid after the job
        sums = checksums([base, mid])
        marker.unlink()
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 1, err
        assert "base.qcow2 does not read like mid.qcow2 after the commit" in err
        assert "nothing was deleted" in err
        assert mid.exists() and checksums([base, mid]) == sums


def test_active_commit_delete_flushes_base_after_the_pivot_and_removes_tops_node(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    with running_vm([base, mid, top], tmp_path, explicit_backing=False) as vm:
        planned = cli("plan", "--qmp", vm.socket, "--base", str(mid), "--active", "--pivot",
                      "--delete", "--json")  # fmt: skip
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        assert _kinds(document["steps"]) == ["block-commit", "human-monitor-command", "rm"]
        assert any("top is not compared with base" in note for note in document["notes"])
        # top was given to QEMU as a -blockdev node, which QEMU keeps after the pivot: the plan
        # says it removes that node first.
        assert any("top.qcow2 ('top')" in note and "blockdev-del" in note
                   for note in document["notes"])  # fmt: skip
        result = cli("commit", "--qmp", vm.socket, "--base", str(mid), "--active", "--pivot",
                     "--delete", "--yes")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Deleted top.qcow2" in result.stdout
        assert not top.exists()
        nodes = vm.execute("query-named-block-nodes")
        assert isinstance(nodes, list) and "top" not in {n["node-name"] for n in nodes}
        # Read from disk while QEMU runs: mid already holds top's data, because QEMU flushed it
        # before the delete.
        assert reads(mid, ChainBuilder.pattern(2), 2 * MiB, MiB)
        assert reads(mid, ChainBuilder.pattern(2), 34 * MiB, 2 * MiB)
    assert chain_names(mid) == ["mid.qcow2", "base.qcow2"]
