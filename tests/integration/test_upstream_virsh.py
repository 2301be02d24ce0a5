"""libvirt 9.0's blockcommit refusals and flags, run through a real libvirtd, virsh and Backchain.

Each test asks virsh and Backchain the same thing and checks that both give the same answer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from backchain.launch import main
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


# request (virsh blockcommit options, also given to Backchain) -> what both must say
INDEX_2 = "could not find backing store index '2' in chain for 'vda'"
REFUSALS = {
    "top = base": (["--top", "vda[2]", "--base", "vda[2]"], INDEX_2),
    "top is the bottom, base above it": (["--top", "vda[3]", "--base", "vda[2]"], INDEX_2),
    "top is the bottom, no base": (["--top", "vda[3]"],
                                   "could not find base image in chain for 'vda'"),
    "shallow, top is the bottom": (["--top", "vda[3]", "--shallow"], "has no backing file"),
    "index out of range": (["--top", "vda[9]"],
                           "could not find backing store index '9' in chain for 'vda'"),
    "index of another disk": (["--top", "vdb[2]"],
                              "requested target 'vdb' does not match target 'vda'"),
    "shallow, base not adjacent": (["--active", "--shallow", "--base", "vda[3]"],
                                   "is not immediately below"),
}  # fmt: skip


def test_virsh_blockcommit_refusals_have_libvirts_words(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, paths = running_chain(tmp_path, domains)
    for case, (options, words) in REFUSALS.items():
        status, said = virsh("blockcommit", name, "vda", *options)
        assert status == 1 and words in said, (case, said)
        code, err = backchain_says(capsys, "plan", "--connect", URI, "--domain", name,
                                   "--disk", "vda", *options)  # fmt: skip
        assert code == 2 and words in err, (case, err)
    # By path, top = base: libvirt names the image it could not find beneath top.
    snap1 = str(paths[1])
    status, said = virsh("blockcommit", name, "vda", "--top", snap1, "--base", snap1)
    assert status == 1 and f"could not find image '{snap1}' beneath" in said
    code, err = backchain_says(capsys, "plan", "--connect", URI, "--domain", name,
                               "--disk", "vda", "--top", snap1, "--base", snap1)  # fmt: skip
    assert code == 2 and f"could not find image '{snap1}' beneath" in err


def test_virsh_bandwidth_must_be_less_than_libvirts_limit(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, _paths = running_chain(tmp_path, domains)
    # virsh takes MiB/s (limit LLONG_MAX >> 20); Backchain's --rate is in bytes/s (LLONG_MAX).
    status, said = virsh("blockcommit", name, "vda", "--top", "vda[2]", "--bandwidth",
                         str((((1 << 63) - 1) >> 20) + 1))  # fmt: skip
    assert status == 1 and f"bandwidth must be less than {((1 << 63) - 1) >> 20}" in said
    argv = ["commit", "--connect", URI, "--domain", name, "--disk", "vda", "--top", "vda[2]"]
    code, err = backchain_says(capsys, *argv, "--rate", str(1 << 63), "--yes")
    assert code == 2 and f"bandwidth must be less than {(1 << 63) - 1}" in err
    assert virsh("blockjob", name, "vda", "--info")[1] in ("", "No current block job for vda")


def test_virsh_keep_relative_on_an_active_commit(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With absolute backing names: refused below the active layer, accepted on it (no overlay)."""
    name, paths = running_chain(tmp_path / "virsh", domains, relative=False)
    status, said = virsh("blockcommit", name, "vda", "--top", "vda[2]", "--keep-relative")
    assert status == 1 and "can't keep relative backing relationship" in said
    assert virsh("blockcommit", name, "vda", "--active", "--keep-relative", "--pivot",
                 "--wait")[0] == 0  # fmt: skip
    name, paths = running_chain(tmp_path / "ours", domains, relative=False)
    argv = ["--connect", URI, "--domain", name, "--disk", "vda", "--keep-relative"]
    code, err = backchain_says(capsys, "plan", *argv, "--top", "vda[2]")
    assert code == 2 and "can't keep relative backing relationship" in err
    code, err = backchain_says(capsys, "commit", *argv, "--pivot", "--yes")
    assert code == 0, err
    for index in range(3):
        assert reads(paths[0], ChainBuilder.pattern(index), index * MiB, MiB)


def _libvirt_words(said: str) -> str:
    """The message libvirt gave, without virsh's own prefixes."""
    line = next((s for s in said.splitlines() if s.startswith("error: ") and ":" in s[7:]), said)
    return line.split(": ", 2)[-1] if line.count(": ") >= 2 else line


PULL_REFUSALS = {
    "base is the active layer (an index)": ["--base", "vda[1]"],
    "index out of range": ["--base", "vda[9]"],
    "index of another disk": ["--base", "vdb[2]"],
    "base not in the chain": ["--base", "/nonexistent/other.qcow2"],
}


def test_virsh_blockpull_refusals_have_libvirts_words(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each refused pull, sent to virsh blockpull and to Backchain: the same libvirt message,
    and the chain is left as it was."""
    name, paths = running_chain(tmp_path, domains)
    for case, options in PULL_REFUSALS.items():
        status, said = virsh("blockpull", name, "vda", *options)
        words = _libvirt_words(said)
        assert status == 1 and words, (case, said)
        code, err = backchain_says(capsys, "pull", "--connect", URI, "--domain", name,
                                   "--disk", "vda", "--yes", *options)  # fmt: skip
        assert code == 2 and words in err, (case, said, err)
    # By path, base = top (the active layer): libvirt looks for base beneath it.
    active = str(paths[-1])
    status, said = virsh("blockpull", name, "vda", "--base", active)
    assert status == 1 and f"could not find image '{active}' beneath" in said
    code, err = backchain_says(capsys, "pull", "--connect", URI, "--domain", name,
                               "--disk", "vda", "--yes", "--base", active)  # fmt: skip
    assert code == 2 and _libvirt_words(said) in err, (said, err)
    assert virsh("blockjob", name, "vda", "--info")[1] in ("", "No current block job for vda")
    assert reads(paths[-1], ChainBuilder.pattern(0), 0, MiB)
