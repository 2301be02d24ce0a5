"""backchain plan/commit --connect URI --domain NAME --all-disks against a real libvirtd."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backchain.cli import commands as cli
from backchain.engines.libvirt.read import parse_disks
from tests.helpers.checks import chain_reads
from tests.images import ChainBuilder
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

URI = "qemu:///system"
NAMES = ["base.qcow2", "snap1.qcow2", "active.qcow2"]


def sources(name: str, inactive: bool = False) -> dict[str, str]:
    """Each disk's source file in ``virsh dumpxml``."""
    argv = ["virsh", "-c", URI, "dumpxml", name] + (["--inactive"] if inactive else [])
    xml = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {disk.target: disk.chain[0].path for disk in parse_disks(xml)}


@pytest.fixture
def two_disks(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """vda on base <- snap1 <- active, vdb on base <- snap1."""
    return (
        ChainBuilder(tmp_path / "a").chain(NAMES),
        ChainBuilder(tmp_path / "b").chain(NAMES[:2]),
    )


def test_all_disks_of_a_running_domain_are_collapsed_with_progress_and_summary(
    two_disks: tuple[list[Path], list[Path]], domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    a, b = two_disks
    name = domains.start({"vda": str(a[-1]), "vdb": str(b[-1])})
    base = ["commit", "--connect", URI, "--domain", name, "--all-disks", "--yes"]
    assert cli.main(base) == 2  # active commits need --pivot or --keep-overlay
    assert "--pivot" in capsys.readouterr().err
    assert sources(name) == {"vda": str(a[-1]), "vdb": str(b[-1])}
    assert cli.main([*base, "--pivot"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "vda: committing active.qcow2 into base.qcow2" in out
    assert "vdb: committing snap1.qcow2 into base.qcow2" in out
    for disk in ("vda", "vdb"):
        progress = [line for line in out if line.startswith(f"{disk}: ") and "%" in line]
        assert progress, out
        assert any(line.startswith(f"{disk}: done: ") for line in out)
    assert out[-3:] == [
        f"ok  vda: {next(x for x in out if x.startswith('vda: done: '))[len('vda: done: ') :]}",
        f"ok  vdb: {next(x for x in out if x.startswith('vdb: done: '))[len('vdb: done: ') :]}",
        f"{name}: 2 of 2 disks collapsed",
    ]
    assert sources(name) == {"vda": str(a[0]), "vdb": str(b[0])}
    assert chain_reads(a[0], 3) and chain_reads(b[0], 2)


def test_all_disks_plan_json_and_shut_off_collapse_with_repoint(
    two_disks: tuple[list[Path], list[Path]], domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    a, b = two_disks
    name = domains.define({"vda": str(a[-1]), "vdb": str(b[-1])})
    argv = ["--connect", URI, "--domain", name, "--all-disks", "--repoint"]
    assert cli.main(["plan", *argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [d["disk"] for d in document["disks"]] == ["vda", "vdb"]
    for disk in document["disks"]:
        kinds = [step.get("call") for step in disk["plan"]["steps"] if isinstance(step, dict)]
        assert kinds[0] == "virDomainGetState" and kinds[-1] == "virDomainDefineXML"
    assert cli.main(["commit", *argv, "--yes", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and [r["disk"] for r in result["results"]] == ["vda", "vdb"]
    assert result["summary"].endswith(f"{name}: 2 of 2 disks collapsed")
    assert sources(name, inactive=True) == {"vda": str(a[0]), "vdb": str(b[0])}
    assert chain_reads(a[0], 3) and chain_reads(b[0], 2)


def test_all_disks_refuses_single_disk_options(
    libvirtd: object, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:  # fmt: skip
    argv = ["plan", "--connect", URI, "--domain", "x", "--all-disks", "--top", "vda[2]"]
    assert cli.main(argv) == 2
    assert "--top apply to one disk" in capsys.readouterr().err
