"""virDomainBlockRebase (virsh blockpull) through a real libvirtd, and a shut-off domain's pull."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from backchain.core.errors import CancelledError, PlanError
from backchain.core.model import CommitRequest, Operation
from backchain.engines.libvirt import engine as lv
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_plan
from tests.images import ChainBuilder, MiB, backing_name, checksums, compare, snapshot_copy, write
from tests.images import backchain as cli
from tests.integration.test_libvirt_commit import NAMES, URI, source_of, view_is_intact
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

PULL = Operation.PULL


def shut_down(domains: Domains, name: str) -> None:  # noqa: F811
    """Stop QEMU gracefully (SIGTERM), so that it flushes what it wrote into the active layer:
    until then qcow2 metadata may live only in QEMU's cache."""
    import libvirt

    dom = domains.conn.lookupByName(name)
    dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if not dom.isActive():
                return
        except libvirt.libvirtError:
            return  # a transient domain is gone once it stopped
        time.sleep(0.1)
    raise AssertionError(f"{name} did not stop")


@pytest.fixture
def vm(tmp_path: Path, domains: Domains) -> tuple[str, list[Path]]:  # noqa: F811
    """A running transient domain on base <- snap1 <- snap2 <- active."""
    paths = ChainBuilder(tmp_path / "img").chain(NAMES)
    return domains.start({"vda": str(paths[-1])}), paths


def test_running_pull_onto_a_base_by_index(
    vm: tuple[str, list[Path]],
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    name, paths = vm
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    sums = checksums(paths[:3])
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", base="vda[3]", operation=PULL,
                                                keep_relative=True))  # fmt: skip
    call = plan.steps[0].call
    assert call is not None and call["call"] == "virDomainBlockRebase"
    assert call["base"] == "vda[3]" and "VIR_DOMAIN_BLOCK_REBASE_RELATIVE" in call["flags"]
    sink = RecordingSink()
    run_plan(plan, sink, CancelToken(), target)
    assert sink.outcome is not None and sink.outcome[0], sink.outcome
    chain = lv.read_domain_graph(URI, name, "vda", extents=False).chain(str(paths[-1]))
    assert [layer.path for layer in chain] == [str(paths[-1]), str(paths[1]), str(paths[0])]
    shut_down(domains, name)
    assert backing_name(paths[-1]) == "snap1.qcow2"
    assert checksums(paths[:3]) == sums
    assert view_is_intact(paths[-1]) and compare(paths[-1], before)


def test_running_pull_without_base_makes_the_disk_standalone(
    vm: tuple[str, list[Path]],
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    name, paths = vm
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    target = lv.LibvirtTarget(URI, name, "vda")
    sums = checksums(paths[:-1])
    plan = lv.plan_commit(target, CommitRequest(image="", operation=PULL))
    assert plan.steps[0].call is not None and plan.steps[0].call["base"] is None
    run_plan(plan, RecordingSink(), CancelToken(), target)
    shut_down(domains, name)
    assert backing_name(paths[-1]) is None
    assert compare(paths[-1], before)
    assert checksums(paths[:-1]) == sums  # the removed layers are not changed


def test_cancel_on_first_progress_then_rerun(tmp_path: Path, domains: Domains) -> None:  # noqa: F811
    paths = ChainBuilder(tmp_path / "img").chain(NAMES, size="256M")
    write(paths[1], 0x3C, 64 * MiB, 64 * MiB)
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    name = domains.start({"vda": str(paths[-1])})
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", operation=PULL, rate=4 * MiB))
    cancel = CancelToken()

    class CancellingSink(RecordingSink):
        def advanced(self, done: int, total: int, phase: str) -> None:
            super().advanced(done, total, phase)
            cancel.cancel()

    with pytest.raises(CancelledError) as caught:
        run_plan(plan, CancellingSink(), cancel, target)
    assert "reads correctly" in caught.value.state or "Nothing was written" in caught.value.state
    assert backing_name(paths[-1]) == "snap2.qcow2"
    again = lv.plan_commit(target, CommitRequest(image="", operation=PULL))
    run_plan(again, RecordingSink(), CancelToken(), target)
    shut_down(domains, name)
    assert backing_name(paths[-1]) is None and compare(paths[-1], before)


@pytest.mark.parametrize(
    ("request_kw", "message"),
    [
        # virsh blockpull --base vda[1]: libvirt looks the index up beneath the active layer.
        ({"base": "vda[1]"}, "could not find backing store index '1' in chain for 'vda'"),
        ({"base": "vda[9]"}, "could not find backing store index '9' in chain for 'vda'"),
        ({"base": "vdb[2]"}, "requested target 'vdb' does not match target 'vda'"),
        ({"top": "vda[2]"}, "streams into the active layer"),
        ({"delete": True}, "cannot delete a pull's removed layers"),
    ],
)
def test_refusals_read_like_virsh_blockpull(
    vm: tuple[str, list[Path]], request_kw: dict[str, object], message: str
) -> None:
    name, _paths = vm
    request = CommitRequest(image="", operation=PULL, **request_kw)  # type: ignore[arg-type]
    with pytest.raises(PlanError) as caught:
        lv.plan_commit(lv.LibvirtTarget(URI, name, "vda"), request)
    assert message in str(caught.value)


def test_virsh_blockpull_gives_the_same_message_for_a_base_above_top(
    vm: tuple[str, list[Path]],
) -> None:
    name, paths = vm
    result = subprocess.run(
        ["virsh", "-c", URI, "blockpull", name, "vda", "--base", str(paths[-1])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"could not find image '{paths[-1]}' beneath '{paths[-1]}'" in result.stderr
    for base, ours in (
        ("vda[9]", "could not find backing store index '9' in chain for 'vda'"),
        ("vdb[2]", "requested target 'vdb' does not match target 'vda'"),
    ):
        virsh = subprocess.run(["virsh", "-c", URI, "blockpull", name, "vda", "--base", base],
                               capture_output=True, text=True, check=False)  # fmt: skip
        assert ours in virsh.stderr, virsh.stderr


def test_shut_off_domain_is_pulled_offline_and_redefined(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    paths = ChainBuilder(tmp_path / "img").chain(NAMES)
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    name = domains.define({"vda": str(paths[-1])})
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", base="vda[4]", operation=PULL,
                                                delete=True))  # fmt: skip
    kinds = [step.kind.value for step in plan.steps]
    assert kinds[0] == "virDomainGetState" and kinds[-1] == "virDomainDefineXML"
    assert plan.steps[1].argv[1] == "rebase"
    sink = RecordingSink()
    run_plan(plan, sink, CancelToken(), target)
    assert sink.outcome is not None and sink.outcome[0], sink.outcome
    assert source_of(name, inactive=True) == str(paths[-1])
    assert not paths[1].exists() and not paths[2].exists()
    assert backing_name(paths[-1]) == "base.qcow2"
    assert compare(paths[-1], before)
    graph = lv.read_domain_graph(URI, name, "vda", extents=False)
    assert [layer.path for layer in graph.chain(str(paths[-1]))] == [str(paths[-1]), str(paths[0])]


def test_backchain_pull_connect_from_the_command_line(
    vm: tuple[str, list[Path]],
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    name, paths = vm
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    source = ["--connect", URI, "--domain", name, "--disk", "vda"]
    planned = cli("plan", "--pull", *source, "--base", "vda[4]", "--json")
    assert planned.returncode == 0, planned.stderr
    document = json.loads(planned.stdout)
    assert document["operation"] == "pull"
    assert document["steps"][0]["call"] == "virDomainBlockRebase"
    result = cli("pull", *source, "--base", "vda[4]", "--rate", str(64 * MiB), "--yes")
    assert result.returncode == 0, result.stderr
    refused = cli("pull", *source, "--base", "vda[1]", "--yes")
    assert refused.returncode == 2, refused.stderr
    assert "could not find backing store index '1' in chain for 'vda'" in refused.stderr
    shut_down(domains, name)
    assert backing_name(paths[-1]) == str(paths[0]) or backing_name(paths[-1]) == "base.qcow2"
    assert compare(paths[-1], before)


def test_sigkill_of_backchain_mid_blockpull_then_resume(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    """Backchain dies while libvirt streams: libvirt's job goes on; the view stays intact, the
    journal says what happened, and ``resume`` ends the job cleanly (re-attaching or finding
    it done)."""
    import os
    import signal
    import sys

    paths = ChainBuilder(tmp_path / "img").chain(NAMES, size="256M")
    write(paths[1], 0x3C, 64 * MiB, 64 * MiB)
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    sums = checksums(paths[:-1])
    name = domains.start({"vda": str(paths[-1])})
    env = {**os.environ, "BACKCHAIN_STATE_DIR": str(tmp_path / "state")}
    source = ["--connect", URI, "--domain", name, "--disk", "vda"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "backchain", "pull", *source, "--rate", str(4 * MiB), "--yes"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def streaming() -> bool:
        info = subprocess.run(["virsh", "-c", URI, "blockjob", name, "vda", "--info"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        seen.append(info.stdout + info.stderr)
        return "Block Pull" in seen[-1]  # virsh prints the progress line on stderr

    seen: list[str] = []

    deadline = time.monotonic() + 60
    while not streaming():
        assert proc.poll() is None and time.monotonic() < deadline, (seen[-3:], proc.communicate())
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    chain = subprocess.run([sys.executable, "-m", "backchain", "chain", *source], env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert "A pull into active.qcow2" in chain.stdout + chain.stderr, chain
    listed = subprocess.run([sys.executable, "-m", "backchain", "resume", "--json"], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    jobs = json.loads(listed.stdout)
    assert len(jobs) == 1 and jobs[0]["plan"]["operation"] == "pull", listed.stderr
    resumed = subprocess.run(
        [sys.executable, "-m", "backchain", "resume", "--yes", str(jobs[0]["id"])],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    shut_down(domains, name)
    assert backing_name(paths[-1]) is None
    assert compare(paths[-1], before)
    assert checksums(paths[:-1]) == sums
