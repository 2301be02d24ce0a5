"""virDomainBlockCommit through a real libvirtd: every flag, progress, pivot, errors, shut-off."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backchain.core.errors import EngineError, PlanError
from backchain.core.model import CommitRequest, OnReady
from backchain.core.valueclass import replace
from backchain.engines.libvirt import collapse
from backchain.engines.libvirt import engine as lv
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_plan
from tests.images import ChainBuilder, MiB, backing_name, reads, write
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

URI = "qemu:///system"
NAMES = ["base.qcow2", "snap1.qcow2", "snap2.qcow2", "active.qcow2"]


def view_is_intact(image: Path, layers: int = 4) -> bool:
    """The whole chain's data, as ChainBuilder wrote it, reads back through ``image``."""
    for i in range(layers):
        pattern = ChainBuilder.pattern(i)
        if not reads(image, pattern, i * MiB, MiB):
            return False
        if not reads(image, pattern, 32 * MiB + i * MiB, MiB):
            return False
    return reads(image, ChainBuilder.pattern(layers - 1), 32 * MiB + layers * MiB, MiB)


def source_of(name: str, disk: str = "vda", inactive: bool = False) -> str:
    """The disk's source file in ``virsh dumpxml``."""
    argv = ["virsh", "-c", URI, "dumpxml", name] + (["--inactive"] if inactive else [])
    xml = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    from backchain.engines.libvirt.read import parse_disks

    return next(d for d in parse_disks(xml) if d.target == disk).chain[0].path


@pytest.fixture
def vm(tmp_path: Path, domains: Domains) -> tuple[str, list[Path]]:  # noqa: F811
    """A running transient domain on base <- snap1 <- snap2 <- active."""
    paths = ChainBuilder(tmp_path).chain(NAMES)
    return domains.start({"vda": str(paths[-1])}), paths


def run(name: str, request: CommitRequest, sink: RecordingSink | None = None) -> RecordingSink:
    """Plan and run one commit on disk vda."""
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, request)
    sink = sink or RecordingSink()
    run_plan(plan, sink, CancelToken(), target)
    return sink


def test_domain_graph_labels_layers_by_vda_index(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    graph = lv.read_domain_graph(URI, name, "vda")
    chain = graph.chain(str(paths[-1]))
    assert [layer.path for layer in chain] == [str(p) for p in reversed(paths)]
    assert [layer.extra["label"] for layer in chain] == ["vda[1]", "vda[2]", "vda[3]", "vda[4]"]
    graph_find = graph.find("vda[3]")
    assert graph_find is not None and graph_find.path == str(paths[1])
    assert all(layer.extents is not None for layer in chain)


def test_intermediate_commit_addressed_by_vda_index(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    request = CommitRequest(image="", top="vda[2]", base="vda[4]")
    plan = lv.plan_commit(lv.LibvirtTarget(URI, name, "vda"), request)
    call = plan.steps[0].call
    assert call is not None and call["top"] == "vda[2]" and call["base"] == "vda[4]"
    assert call["flags"] == ["VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES"]
    sink = RecordingSink()
    run_plan(plan, sink, CancelToken(), lv.LibvirtTarget(URI, name, "vda"))
    assert sink.outcome is not None and sink.outcome[0]
    assert lv.read_domain_graph(URI, name, "vda", extents=False).chain(str(paths[-1]))[1].path == (
        str(paths[0])
    )
    assert view_is_intact(paths[-1])
    assert reads(paths[0], ChainBuilder.pattern(2), 2 * MiB, MiB)  # snap2's data is in base


def test_shallow_with_delete_removes_the_merged_layer(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    plan = lv.plan_commit(
        lv.LibvirtTarget(URI, name, "vda"),
        CommitRequest(image="", top="vda[2]", shallow=True, delete=True),
    )
    call = plan.steps[0].call
    assert call is not None and call["base"] == "vda[3]"
    assert set(call["flags"]) == {
        "VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES",
        "VIR_DOMAIN_BLOCK_COMMIT_SHALLOW",
        "VIR_DOMAIN_BLOCK_COMMIT_DELETE",
    }
    run_plan(plan, RecordingSink(), CancelToken(), lv.LibvirtTarget(URI, name, "vda"))
    assert not paths[2].exists()
    assert paths[1].exists() and paths[0].exists()
    assert view_is_intact(paths[-1])


def test_relative_keeps_the_overlay_header_relative(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    sink = run(name, CommitRequest(image="", top="vda[2]", base="vda[3]", keep_relative=True))
    assert sink.outcome is not None and sink.outcome[0]
    assert backing_name(paths[-1]) == "snap1.qcow2"
    assert view_is_intact(paths[-1])


def test_without_relative_libvirt_writes_an_absolute_backing_name(
    vm: tuple[str, list[Path]],
) -> None:
    name, paths = vm
    request = CommitRequest(image="", top="vda[2]", base="vda[3]")
    previewed = lv.plan_commit(lv.LibvirtTarget(URI, name, "vda"), request).rebased
    run(name, request)
    assert backing_name(paths[-1]) == str(paths[1])
    # The preview shows the name libvirt writes (not qemu-img's relative one).
    assert [(r.image, r.backing_name) for r in previewed] == [(str(paths[-1]), str(paths[1]))]
    assert view_is_intact(paths[-1])


def test_active_commit_with_pivot_makes_base_the_disk_source(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    request = CommitRequest(image="", on_ready=OnReady.PIVOT)
    plan = lv.plan_commit(lv.LibvirtTarget(URI, name, "vda"), request)
    assert plan.active_commit and "VIR_DOMAIN_BLOCK_COMMIT_ACTIVE" in plan.steps[0].call["flags"]
    assert plan.steps[1].call == {
        "call": "virDomainBlockJobAbort",
        "disk": "vda",
        "flags": ["VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT"],
    }
    assert any("ACTIVE flag" in note for note in plan.notes)
    sink = RecordingSink(on_ready=OnReady.PIVOT)
    run_plan(plan, sink, CancelToken(), lv.LibvirtTarget(URI, name, "vda"))
    assert ("ready", OnReady.PIVOT) in sink.events
    assert sink.outcome is not None and sink.outcome[0]
    assert source_of(name) == str(paths[0])
    assert view_is_intact(paths[0])
    # libvirt holds cur at end-1 until ready: that is shown as synchronising, never as commit.
    assert all(phase != "commit" for done, total, phase in sink.progress if done == total - 1)


def test_active_commit_keeping_the_overlay_leaves_top_active(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    sink = run(name, CommitRequest(image="", on_ready=OnReady.KEEP_OVERLAY),
               RecordingSink(on_ready=OnReady.KEEP_OVERLAY))  # fmt: skip
    assert sink.outcome is not None and sink.outcome[0], sink.outcome
    assert source_of(name) == str(paths[-1])
    assert view_is_intact(paths[-1])
    assert view_is_intact(paths[0])  # base holds a consistent copy of the whole chain


def test_bandwidth_limit_reports_progress_and_can_be_changed(vm: tuple[str, list[Path]]) -> None:
    name, paths = vm
    target = lv.LibvirtTarget(URI, name, "vda")
    rate, faster = MiB // 2, 2 * MiB

    class SpeedUp(RecordingSink):
        def advanced(self, done: int, total: int, phase: str) -> None:
            super().advanced(done, total, phase)
            if len(self.progress) == 3:
                lv.set_speed(URI, name, "vda", faster)

    sink = SpeedUp()
    plan = lv.plan_commit(target, CommitRequest(image="", top="vda[2]", rate=rate))
    assert plan.steps[0].call["bandwidth"] == rate
    run_plan(plan, sink, CancelToken(), target)
    assert sink.outcome is not None and sink.outcome[0]
    assert f"bandwidth: {rate} bytes/s" in sink.log
    assert f"bandwidth: {faster} bytes/s" in sink.log
    moving = sorted({done for done, _total, _phase in sink.progress})
    assert len(moving) >= 3, sink.progress
    assert view_is_intact(paths[-1])


def test_libvirt_error_reaches_the_user_unchanged(vm: tuple[str, list[Path]]) -> None:
    import libvirt

    name, paths = vm
    conn = libvirt.open(URI)
    try:
        with pytest.raises(libvirt.libvirtError) as direct:
            conn.lookupByName(name).blockCommit("vda", None, None, 0, 0)
    finally:
        conn.close()
    libvirt_message = str(direct.value)
    assert "requires active flag" in libvirt_message
    # The same call through our runner, with ACTIVE removed from an otherwise valid plan.
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", on_ready=OnReady.PIVOT))
    call = dict(plan.steps[0].call or {})
    call["flags"] = ["VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES"]
    call["top"] = None
    call["base"] = None
    tampered = replace(plan, steps=(replace(plan.steps[0], call=call),))
    sink = RecordingSink()
    with pytest.raises(EngineError) as ours:
        run_plan(tampered, sink, CancelToken(), target)
    assert ours.value.message == libvirt_message
    assert sink.outcome is not None and sink.outcome[0] is False
    assert sink.outcome[1].startswith(libvirt_message)
    assert view_is_intact(paths[-1])


def test_planner_refuses_active_top_when_active_is_off_explicitly(
    vm: tuple[str, list[Path]],
) -> None:
    name, _paths = vm
    with pytest.raises(PlanError, match="not active"):
        lv.plan_commit(
            lv.LibvirtTarget(URI, name, "vda"),
            CommitRequest(image="", top="vda[2]", active=True),
        )


def test_shut_off_domain_is_committed_offline_and_repointed(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    paths = ChainBuilder(tmp_path).chain(NAMES)
    name = domains.define({"vda": str(paths[-1])})
    target = lv.LibvirtTarget(URI, name, "vda")
    graph = lv.read_domain_graph(URI, name, "vda")
    assert [layer.extra["label"] for layer in graph.chain(str(paths[-1]))] == [
        "vda[1]", "vda[2]", "vda[3]", "vda[4]",
    ]  # fmt: skip
    plan = lv.plan_commit(target, CommitRequest(image="", delete=True), repoint=True)
    assert plan.engine == "libvirt" and plan.steps[0].kind == "virDomainGetState"
    assert plan.steps[1].argv[:2] == ("qemu-img", "commit")
    assert plan.steps[-1].kind == "virDomainDefineXML"
    sink = RecordingSink()
    run_plan(plan, sink, CancelToken(), target)
    assert sink.outcome is not None and sink.outcome[0], sink.outcome
    assert source_of(name, inactive=True) == str(paths[0])
    assert not any(p.exists() for p in paths[1:])
    assert view_is_intact(paths[0])


def test_shut_off_delete_of_the_disk_source_needs_repoint(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    paths = ChainBuilder(tmp_path).chain(NAMES[:2])
    name = domains.define({"vda": str(paths[-1])})
    with pytest.raises(PlanError, match="--repoint"):
        lv.plan_commit(lv.LibvirtTarget(URI, name, "vda"), CommitRequest(image="", delete=True))


def test_collapse_commits_every_disk_of_a_domain(tmp_path: Path, domains: Domains) -> None:  # noqa: F811
    a = ChainBuilder(tmp_path / "a").chain(NAMES[:3])
    b = ChainBuilder(tmp_path / "b").chain(NAMES[:2])
    name = domains.start({"vda": str(a[-1]), "vdb": str(b[-1])})
    sinks: dict[str, RecordingSink] = {}

    def sink_for(disk: str) -> RecordingSink:
        sinks[disk] = RecordingSink(on_ready=OnReady.PIVOT)
        return sinks[disk]

    results = collapse.collapse_domain(URI, name, sink_for, CancelToken(), run_plan)
    assert [(r.disk, r.ok) for r in results] == [("vda", True), ("vdb", True)]
    assert set(sinks) == {"vda", "vdb"} and all(s.progress for s in sinks.values())
    assert source_of(name, "vda") == str(a[0]) and source_of(name, "vdb") == str(b[0])
    assert view_is_intact(a[0], 3) and view_is_intact(b[0], 2)
    assert "2 of 2 disks collapsed" in collapse.summary(name, results)


def test_missing_domain_reports_libvirts_message(libvirtd: object) -> None:  # noqa: F811
    with pytest.raises(EngineError, match="Domain not found"):
        lv.read_domain_graph(URI, "bc-no-such-domain", "vda")
    assert os.path.exists("/run/libvirt")


def test_a_resumed_running_domain_job_reattaches_to_the_block_job_libvirt_kept(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
) -> None:
    """Backchain killed mid-job: libvirt keeps the block job; resume follows it to its end."""
    import json
    import signal
    import sys
    import time

    paths = ChainBuilder(tmp_path / "vm").chain(NAMES)
    write(paths[2], 0x5A, 40 * MiB, 16 * MiB)  # snap2 copies for a few seconds at 4 MiB/s
    name = domains.start({"vda": str(paths[-1])})
    env = dict(os.environ, BACKCHAIN_STATE_DIR=str(tmp_path / "state"))
    argv = ["commit", "--connect", URI, "--domain", name, "--disk", "vda", "--top", "vda[2]",
            "--base", "vda[3]", "--rate", str(4 * MiB), "--yes"]  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-m", "backchain", *argv],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    jobs = tmp_path / "state" / "jobs"
    deadline = time.monotonic() + 60
    while not (jobs.is_dir() and any(jobs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = ""
    while "Bandwidth" not in shown and time.monotonic() < deadline:  # libvirt runs the job
        shown = subprocess.run(["virsh", "-c", URI, "blockjob", name, "vda"],
                               capture_output=True, text=True, check=False).stdout  # fmt: skip
        time.sleep(0.1)
    if "Bandwidth" not in shown:
        first.kill()
        err = first.communicate()[1]
        pytest.fail(f"the block job never showed: {shown} / exit {first.returncode} / {err}")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    listed = subprocess.run([sys.executable, "-m", "backchain", "resume", "--json"], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    records = json.loads(listed.stdout)
    assert len(records) == 1 and "was interrupted" in records[0]["message"], listed.stdout
    rerun = subprocess.run(
        [sys.executable, "-m", "backchain", "resume", "--yes", records[0]["id"]],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert not any(jobs.iterdir())
    assert backing_name(paths[-1]) == str(paths[1])  # active now reads through snap1
    assert view_is_intact(paths[-1])
    assert reads(paths[-1], 0x5A, 40 * MiB, 16 * MiB)
