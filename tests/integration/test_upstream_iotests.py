"""QEMU's block-commit iotests (040 and friends), run against Backchain and a real QEMU."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchain.launch import main
from tests.images import ChainBuilder, MiB, backing_name, chain_info, create, reads, write
from tests.qemu_vm import QemuVM, running_vm


@pytest.fixture
def vm(chain_builder: ChainBuilder, tmp_path: Path) -> Iterator[QemuVM]:
    """base <- mid <- top on vd0, one explicit node per layer."""
    layers = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    with running_vm(layers, tmp_path) as machine:
        yield machine


def test_virsh_pivot_implies_active_over_qmp(
    vm: QemuVM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As virsh does (VIR_DOMAIN_BLOCK_COMMIT_ACTIVE with --pivot): no --active needed."""
    assert main(["commit", "--qmp", vm.socket, "--pivot", "--yes"]) == 0, capsys.readouterr().err
    vm.stop()
    base = tmp_path / "base.qcow2"
    assert len(chain_info(base)) == 1
    for index in range(3):
        assert reads(base, ChainBuilder.pattern(index), index * MiB, MiB)
    assert main(["plan", "--qmp", vm.socket, "--top", "mid", "--keep-overlay"]) == 1  # QEMU gone


@pytest.mark.parametrize("device", [None, "thr", "vd0"])
def test_iotest_040_commit_with_filters_sends_the_root_filter_as_device(
    chain_builder: ChainBuilder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    device: str | None,
) -> None:
    """040 TestCommitWithFilters: a throttle filter at the root; device= names the filter."""
    layers = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    with running_vm(layers, tmp_path, root_filter="thr") as vm:
        pick = ["--device", device] if device else []
        assert main(["plan", "--qmp", vm.socket, *pick, "--top", "mid", "--json"]) == 0
        arguments = json.loads(capsys.readouterr().out)["steps"][0]["arguments"]
        assert (arguments["device"], arguments["top-node"]) == ("thr", "mid")
        assert main(["commit", "--qmp", vm.socket, *pick, "--top", "mid", "--yes"]) == 0, (
            capsys.readouterr().err
        )
        nodes = vm.execute("query-named-block-nodes")
        assert isinstance(nodes, list)
        top = next(node for node in nodes if node["node-name"] == "top")
        assert top["image"]["backing-image"]["filename"] == str(layers[0])
    assert backing_name(tmp_path / "top.qcow2") == "base.qcow2"
    for index in range(3):
        assert reads(layers[-1], ChainBuilder.pattern(index), index * MiB, MiB)


@pytest.mark.parametrize("active", [True, False])
def test_virsh_disk_already_in_active_block_job_over_qmp(
    vm: QemuVM, tmp_path: Path, capsys: pytest.CaptureFixture[str], active: bool
) -> None:
    """libvirt's refusal, at plan time, of a disk whose chain a block job already uses."""
    job: dict[str, object] = {"job-id": "other", "device": "top", "top-node": "top",
                              "base-node": "mid", "auto-finalize": False}  # fmt: skip
    if not active:
        job.update({"top-node": "mid", "base-node": "base", "speed": 1})
    vm.execute("block-commit", job)
    for command in ("plan", "commit"):
        argv = [command, "--qmp", vm.socket, "--top", "mid"]
        assert main(argv + (["--yes"] if command == "commit" else [])) == 2
        assert "disk 'vd0' already in active block job" in capsys.readouterr().err
    jobs = vm.execute("query-block-jobs")
    assert isinstance(jobs, list) and [j["device"] for j in jobs] == ["other"]


def test_iotest_040_device_not_found_is_a_refusal(
    vm: QemuVM, capsys: pytest.CaptureFixture[str]
) -> None:
    """040 test_device_not_found: QEMU answers DeviceNotFound; Backchain refuses first (exit 2)."""
    for argv in (["plan"], ["commit", "--yes"]):
        assert main([*argv, "--qmp", vm.socket, "--device", "nonexistent", "--top", "mid"]) == 2
        assert "QEMU has no device or node named 'nonexistent'" in capsys.readouterr().err
    jobs = vm.execute("query-block-jobs")
    assert jobs == []


def test_virsh_checks_active_before_shallow_adjacency_over_qmp(
    vm: QemuVM, capsys: pytest.CaptureFixture[str]
) -> None:
    """libvirt checks ACTIVE first: top is active, no --active, and a base not adjacent."""
    assert main(["plan", "--qmp", vm.socket, "--shallow", "--base", "base"]) == 2
    assert "commit of 'top' active layer requires active flag" in capsys.readouterr().err
    assert main(["plan", "--qmp", vm.socket, "--active", "--shallow", "--base", "base"]) == 2
    assert "base 'base' is not immediately below 'top' in chain for 'vd0'" in (
        capsys.readouterr().err
    )


def test_iotest_040_commit_with_overridden_backing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """top's header names base_a, but QEMU opened base_b below it: only base_b is top's base."""
    base_a = create(tmp_path / "base_a.qcow2", "16M")
    base_b = create(tmp_path / "base_b.qcow2", "16M")
    top = create(tmp_path / "top.qcow2", backing="base_a.qcow2", cwd=tmp_path)
    write(top, 0x33, 0, MiB)
    with running_vm([base_b, top], tmp_path, names=["base", "top"]) as vm:
        assert main(["plan", "--qmp", vm.socket, "--base", str(base_a), "--active"]) == 2
        assert "could not find image" in capsys.readouterr().err
        argv = ["commit", "--qmp", vm.socket, "--base", str(base_b), "--pivot", "--yes"]
        assert main(argv) == 0, capsys.readouterr().err
    assert reads(base_b, 0x33, 0, MiB) and not reads(base_a, 0x33, 0, MiB)


def test_iotest_040_active_zero_length_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TestActiveZeroLengthImage: a chain of zero-length images commits (nothing to copy)."""
    base = create(tmp_path / "base.qcow2", "0")
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    with running_vm([base, mid, top], tmp_path) as vm:
        assert main(["commit", "--qmp", vm.socket, "--top", "mid", "--yes"]) == 0, (
            capsys.readouterr().err
        )
        assert main(["commit", "--qmp", vm.socket, "--pivot", "--yes"]) == 0, (
            capsys.readouterr().err
        )
    assert len(chain_info(base)) == 1


def test_iotest_040_relative_paths_top_and_base_named_exactly_as_the_chain_records_them(
    tmp_path: Path,
) -> None:
    """040 TestRelativePaths: ``top='../mid.img' base='../dir1/backing.img'`` as recorded."""
    (tmp_path / "dir1").mkdir()
    (tmp_path / "sub" / "dir2").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    backing = create(tmp_path / "dir1" / "backing.img", "8M")
    write(backing, 0x11, 0, MiB)
    mid = create(tmp_path / "sub" / "mid.img", backing="../dir1/backing.img",
                 cwd=tmp_path / "sub")  # fmt: skip
    write(mid, 0x22, MiB, MiB)
    top = create(tmp_path / "sub" / "dir2" / "top.img", backing="../mid.img",
                 cwd=tmp_path / "sub" / "dir2")  # fmt: skip
    write(top, 0x33, 2 * MiB, MiB)
    argv = ["commit", "--yes", str(top), "--top", "../mid.img", "--base", "../dir1/backing.img"]
    result = subprocess.run([sys.executable, "-m", "backchain", *argv], cwd=tmp_path / "elsewhere",
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert backing_name(top) == "../../dir1/backing.img"  # re-pointed, still relative
    assert (
        reads(top, 0x11, 0, MiB) and reads(top, 0x22, MiB, MiB) and reads(top, 0x33, 2 * MiB, MiB)
    )
    assert reads(backing, 0x22, MiB, MiB)
