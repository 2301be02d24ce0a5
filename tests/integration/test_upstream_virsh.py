"""libvirt 9.0's blockcommit refusals and flags, run through a real libvirtd, virsh and Backchain.

Each test asks virsh and Backchain the same thing and checks that both give the same answer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backchain.cli import main
from tests.images import ChainBuilder, MiB, reads
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

URI = "qemu:///system"


def virsh(*args: str) -> tuple[int, str]:
    """Run virsh against the test daemon: its exit status and what it said."""
    result = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                            check=False, timeout=120)  # fmt: skip
    return result.returncode, (result.stdout + result.stderr).strip()


def running_chain(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    relative: bool = True,
) -> tuple[str, list[Path]]:
    """A running domain whose vda is active <- snap1 <- base (vda[1], vda[2], vda[3])."""
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"],
                                         relative=relative)  # fmt: skip
    return domains.start({"vda": str(paths[-1])}), paths


def backchain_says(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run Backchain's command line in-process: its exit status and its error output."""
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_virsh_pivot_implies_active(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, paths = running_chain(tmp_path, domains)
    # On a layer below the active one, --pivot means ACTIVE, which virsh and we refuse alike.
    for flag in ("--pivot", "--keep-overlay"):
        status, said = virsh("blockcommit", name, "vda", "--top", "vda[2]", flag)
        assert status == 1 and "active commit requested but" in said
        code, err = backchain_says(capsys, "plan", "--connect", URI, "--domain", name,
                                   "--disk", "vda", "--top", "vda[2]", flag)  # fmt: skip
        assert code == 2 and "active commit requested but 'vda[2]' is not active" in err
    # On the active layer, --pivot alone is an active commit (no --active needed).
    code, err = backchain_says(capsys, "commit", "--connect", URI, "--domain", name,
                               "--disk", "vda", "--pivot", "--yes")  # fmt: skip
    assert code == 0, err
    for i in range(3):
        assert reads(paths[0], ChainBuilder.pattern(i), i * MiB, MiB)


def test_virsh_disk_already_in_active_block_job(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, _paths = running_chain(tmp_path, domains)
    assert virsh("blockcommit", name, "vda", "--active")[0] == 0  # stays ready, mirroring
    status, said = virsh("blockcommit", name, "vda", "--top", "vda[2]")
    assert status == 1 and "disk 'vda' already in active block job" in said
    for command in ("plan", "commit"):
        argv = [command, "--connect", URI, "--domain", name, "--disk", "vda", "--top", "vda[2]"]
        code, err = backchain_says(capsys, *argv, *(["--yes"] if command == "commit" else []))
        assert code == 2 and "disk 'vda' already in active block job" in err
    assert virsh("blockjob", name, "vda", "--abort")[0] == 0
