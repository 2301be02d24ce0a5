"""A remote libvirt URI for real: qemu+ssh:// through a local sshd with keys made by the test."""

from __future__ import annotations

import shutil
from pathlib import Path

from backchain.core.model import CommitRequest
from backchain.engines.libvirt import engine as lv
from backchain.engines.libvirt.read import REMOTE_NOTE
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_plan
from tests.images import ChainBuilder, MiB, backing_name, reads
from tests.libvirt_daemon import Domains, domains, libvirtd, ssh_uri  # noqa: F401


def test_far_side_helper_is_installed() -> None:
    # libvirt's ssh transport runs virt-ssh-helper on the far side (nc only as a fallback).
    assert shutil.which("virt-ssh-helper") is not None


def test_remote_domains_and_chain_come_from_the_domain_xml(
    ssh_uri: str, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    listed = {d.name: d for d in lv.list_domains(ssh_uri)}
    assert listed[name].running and [d.target for d in listed[name].disks] == ["vda"]
    graph = lv.read_domain_graph(ssh_uri, name, "vda")
    chain = graph.chain(str(paths[-1]))
    assert [layer.path for layer in chain] == [str(p) for p in reversed(paths)]
    assert [layer.extra["label"] for layer in chain] == ["vda[1]", "vda[2]", "vda[3]"]
    assert chain[0].virtual_size == 64 * MiB
    plan = lv.plan_commit(lv.LibvirtTarget(ssh_uri, name, "vda"),
                          CommitRequest(image="", top="vda[2]", keep_relative=True))  # fmt: skip
    assert REMOTE_NOTE in plan.notes
    assert plan.at_risk == () and plan.bytes_to_copy is None


def test_remote_intermediate_commit_runs_over_ssh(
    ssh_uri: str, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    target = lv.LibvirtTarget(ssh_uri, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", top="vda[2]", keep_relative=True))
    sink = RecordingSink()
    run_plan(plan, sink, CancelToken(), target)
    assert sink.outcome is not None and sink.outcome[0], sink.outcome
    assert backing_name(paths[-1]) == "base.qcow2"
    for i in range(3):
        assert reads(paths[-1], ChainBuilder.pattern(i), i * MiB, MiB)
    assert reads(paths[0], ChainBuilder.pattern(1), 1 * MiB, MiB)
