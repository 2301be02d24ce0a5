"""backchain chain/plan/commit --connect URI --domain NAME --disk vda, against a real libvirtd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import backchain.cli.main as cli
from tests.images import ChainBuilder, MiB, reads
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

URI = "qemu:///system"


def test_chain_lists_domains_and_a_disks_labelled_chain(
    tmp_path: Path, domains: Domains, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    assert cli.main(["chain", "--connect", URI, "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed[name]["running"] and listed[name]["disks"][0]["target"] == "vda"
    assert cli.main(["chain", "--connect", URI, "--domain", name, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    chain = document["disks"][0]["chain"]
    assert [x["label"] for x in chain] == ["vda[1]", "vda[2]", "vda[3]"]
    assert [x["path"] for x in chain] == [str(p) for p in reversed(paths)]


def test_plan_json_carries_the_libvirt_call(
    tmp_path: Path, domains: Domains, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    argv = ["plan", "--connect", URI, "--domain", name, "--disk", "vda",
            "--top", "vda[2]", "--base", "vda[3]", "--keep-relative", "--json"]  # fmt: skip
    assert cli.main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["engine"] == "libvirt"
    assert plan["steps"] == [{
        "call": "virDomainBlockCommit", "disk": "vda", "base": "vda[3]", "top": "vda[2]",
        "bandwidth": 0,
        "flags": ["VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES", "VIR_DOMAIN_BLOCK_COMMIT_RELATIVE"],
    }]  # fmt: skip


def test_commit_active_layer_with_pivot(
    tmp_path: Path, domains: Domains, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    base = ["commit", "--connect", URI, "--domain", name, "--disk", "vda", "--yes"]
    assert cli.main(base) == 2  # an active commit needs --pivot or --keep-overlay
    assert "--pivot" in capsys.readouterr().err
    assert cli.main([*base, "--pivot"]) == 0
    assert "now the active layer" in capsys.readouterr().out
    assert cli.main(["chain", "--connect", URI, "--domain", name, "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)["disks"][0]["chain"]
    assert [x["path"] for x in chain] == [str(paths[0])]
    for i in range(3):
        assert reads(paths[0], ChainBuilder.pattern(i), i * MiB, MiB)


def test_unknown_domain_shows_libvirts_message(
    libvirtd: object, capsys: pytest.CaptureFixture[str],  # noqa: F811
) -> None:  # fmt: skip
    argv = ["plan", "--connect", URI, "--domain", "bc-missing", "--disk", "vda"]
    assert cli.main(argv) == 1
    assert "Domain not found" in capsys.readouterr().err
