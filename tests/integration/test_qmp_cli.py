"""The command line against a running QEMU: chain/plan/commit --qmp, exit statuses, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchain.launch import main
from tests.images import ChainBuilder, MiB, backing_name, chain_info, reads
from tests.qemu_vm import QemuVM, running_vm


@pytest.fixture
def vm(chain_builder: ChainBuilder, tmp_path: Path) -> Iterator[QemuVM]:
    """base <- mid <- top on vd0, one explicit node per layer."""
    layers = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    with running_vm(layers, tmp_path) as machine:
        yield machine


def test_plan_qmp_json_prints_the_block_commit_object(vm: QemuVM, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backchain", "plan", "--qmp", vm.socket, "--top", "mid", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["engine"] == "qmp"
    assert document["top"] == str(tmp_path / "mid.qcow2")
    assert document["bytes_to_copy"] == 3 * MiB
    assert document["steps"] == [
        {
            "execute": "block-commit",
            "arguments": {
                "job-id": "backchain-commit-mid",
                "device": "top",
                "top-node": "mid",
                "base-node": "base",
                "speed": 0,
                "auto-finalize": False,
                "auto-dismiss": False,
                "backing-file": "base.qcow2",
            },
        }
    ]


def test_chain_qmp_shows_node_names(vm: QemuVM, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chain", "--qmp", vm.socket, "--device", "vd0"]) == 0
    out = capsys.readouterr().out
    assert "node top" in out and "node mid" in out and "node base" in out


def test_refused_requests_exit_2(vm: QemuVM, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--qmp", vm.socket]) == 2
    assert "requires active flag" in capsys.readouterr().err
    assert main(["commit", "--qmp", vm.socket, "--active", "--yes"]) == 2
    assert "--pivot or --keep-overlay" in capsys.readouterr().err
    assert main(["plan", "--qmp", vm.socket, "--top", "mid", "--base", "top"]) == 2
    assert "beneath 'mid'" in capsys.readouterr().err


def test_commit_qmp_active_pivot(
    vm: QemuVM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["commit", "--qmp", vm.socket, "--active", "--pivot", "--yes", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["ok"] is True
    vm.stop()
    base = tmp_path / "base.qcow2"
    assert len(chain_info(base)) == 1
    for index, pattern in enumerate((0x11, 0x22, 0x33)):
        assert reads(base, pattern, index * MiB, MiB)


def test_commit_qmp_intermediate_then_qemu_gone_fails_with_1(
    vm: QemuVM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["commit", "--qmp", vm.socket, "--top", "mid", "--yes"]) == 0
    vm.stop()
    assert backing_name(tmp_path / "top.qcow2") == "base.qcow2"
    assert main(["chain", "--qmp", vm.socket]) == 1
    assert f"no QEMU is listening at {vm.socket}" in capsys.readouterr().err
