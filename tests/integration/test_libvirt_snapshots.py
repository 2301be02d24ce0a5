"""libvirt snapshots on a real libvirtd: reading, snapshot-delete as libvirt does it, the guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backchain.cli import commands as cli
from backchain.cli.snapshots import run_snapshot_delete
from backchain.core.errors import EngineError, PlanError
from backchain.core.model import CommitRequest, EngineKind, Step, StepKind
from backchain.engines.libvirt import snapshots as snaps
from backchain.engines.progress import CancelToken, RecordingSink
from tests.images import tree_checksums
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401
from tests.libvirt_snapshot_vm import (
    URI,
    made_vm,  # noqa: F401
    snap_vm,
    virsh,
    virsh_error,
    with_snapshots,
)

Made = tuple[Path, Domains]
WHICH = {"oldest": "s1", "middle": "s2", "newest": "s3"}


@pytest.mark.parametrize("running", [True, False], ids=["running", "shut-off"])
@pytest.mark.parametrize("ndisks", [1, 2], ids=["one-disk", "two-disks"])
@pytest.mark.parametrize("which", list(WHICH))
def test_snapshot_delete_matches_libvirt_and_keeps_it_consistent(
    made_vm: Made,  # noqa: F811
    running: bool,
    ndisks: int,
    which: str,
) -> None:
    with snap_vm(*made_vm, ndisks, running) as vm:
        with_snapshots(vm, 3)
        target = WHICH[which]
        remaining = [s for s in vm.snapshots if s != target]
        if not running and which != "newest":
            # libvirt 9.0 reads a shut-off domain's chain from its XML, which holds only the
            # disk's source: it refuses every snapshot but the newest. So does the preview.
            with pytest.raises(PlanError) as refused:
                snaps.plan_snapshot_delete(URI, vm.name, target)
            result = virsh("snapshot-delete", vm.name, target, check=False)
            assert result.returncode != 0
            assert str(refused.value) == virsh_error(result)
            remaining = list(vm.snapshots)
        else:
            plan = snaps.plan_snapshot_delete(URI, vm.name, target)
            expected = {d: vm.snapshot_disk(target, d) for d in vm.disks}
            assert [(m.disk, m.top, m.base) for m in plan.merges] == [
                (d, *expected[d]) for d in vm.disks
            ]
            assert all(m.active == (which == "newest") for m in plan.merges)
            assert all(m.plan is not None and m.plan.deleted == (m.top,) for m in plan.merges)
            sink = RecordingSink()
            run_snapshot_delete(plan, sink, CancelToken())
            assert sink.outcome is not None and sink.outcome[0]
            assert {phase for _d, _t, phase in sink.progress} >= {f"{d} done" for d in vm.disks}
            assert not any(os.path.exists(m.top) for m in plan.merges)
        vm.check_consistent(remaining)
        # Every snapshot left can still be deleted the libvirt way (a shut-off domain's only
        # from the newest, as libvirt 9.0 allows), and everything stays consistent after each.
        while remaining:
            gone = remaining.pop(0 if running else -1)
            virsh("snapshot-delete", vm.name, gone)
            vm.check_consistent(remaining)


def test_chain_json_shows_each_layers_snapshots(
    made_vm: Made,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 2)
        assert cli.main(["chain", "--connect", URI, "--domain", vm.name, "--json"]) == 0
        chain = json.loads(capsys.readouterr().out)["disks"][0]["chain"]
        found = [[(s["name"], s["role"]) for s in layer["libvirt_snapshots"]] for layer in chain]
        assert found == [
            [("s2", "created")],
            [("s1", "created"), ("s2", "point-in-time")],
            [("s1", "point-in-time")],
        ]
        assert all(
            s["created"].endswith("Z") for layer in chain for s in layer["libvirt_snapshots"]
        )
        assert cli.main(["chain", "--connect", URI, "--domain", vm.name]) == 0
        text = capsys.readouterr().out
        assert " · " in text and "s2 · " in text and "(point-in-time)" in text

        argv = ["--connect", URI, "--domain", vm.name]
        assert cli.main(["plan", *argv, "--delete-snapshot", "s1", "--json"]) == 0
        preview = json.loads(capsys.readouterr().out)
        assert [(d["top"], d["base"]) for d in preview["disks"]] == [
            (chain[1]["path"], chain[2]["path"])
        ]
        assert preview["steps"] == [
            {
                "call": "virDomainSnapshotDelete",
                "domain": vm.name,
                "snapshot": "s1",
                "flags": 0,
                "disks": [{"disk": "hda", "top": chain[1]["path"], "base": chain[2]["path"]}],
            }
        ]
        assert cli.main(["snapshot-delete", *argv, "nope", "--yes"]) == 2
        assert "no domain snapshot with matching name 'nope'" in capsys.readouterr().err
        assert cli.main(["snapshot-delete", *argv, "s1", "--yes", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["ok"]
        vm.check_consistent(["s2"])


def _commit_argv(vm_name: str, top: Path, base: Path, *extra: str) -> list[str]:
    return [
        "commit",
        "--connect",
        URI,
        "--domain",
        vm_name,
        "--disk",
        "hda",
        "--top",
        str(top),
        "--base",
        str(base),
        "--delete",
        "--yes",
        *extra,
    ]


@pytest.mark.parametrize("running", [True, False], ids=["running", "shut-off"])
def test_guard_refuses_a_commit_over_snapshotted_files_until_metadata_may_go(
    made_vm: Made,  # noqa: F811
    running: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with snap_vm(*made_vm, 1, running) as vm:
        with_snapshots(vm, 4)
        chain = [Path(p) for p in vm.chain("hda")]  # vm.s4, vm.s3, vm.s2, vm.s1, base
        top, base = chain[1], chain[2]
        before = tree_checksums(vm.directory)
        assert cli.main(_commit_argv(vm.name, top, base)) == 2
        err = capsys.readouterr().err
        assert "s4, s3, s2" in err and "backchain snapshot-delete" in err
        assert "--drop-snapshot-metadata" in err
        assert tree_checksums(vm.directory) == before
        assert vm.listed() == ["s1", "s2", "s3", "s4"]

        argv = _commit_argv(vm.name, top, base, "--drop-snapshot-metadata", "--json")
        assert cli.main(["plan", *[a for a in argv[1:] if a != "--yes"]]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["notes"][0].startswith("Metadata dropped: libvirt snapshots s4, s3, s2")
        assert plan["steps"][-1]["flags"] == ["VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY"]

        assert cli.main(_commit_argv(vm.name, top, base, "--drop-snapshot-metadata")) == 0
        assert not top.exists()
        vm.check_consistent(["s1"], one_layer_each=False)
        if not running:
            # libvirt 9.0 deletes only a shut-off domain's newest snapshot; the preview agrees.
            with pytest.raises(PlanError) as refused:
                snaps.plan_snapshot_delete(URI, vm.name, "s1")
            result = virsh("snapshot-delete", vm.name, "s1", check=False)
            assert str(refused.value) == virsh_error(result)
            virsh("start", vm.name)
            vm.running = True
        virsh("snapshot-delete", vm.name, "s1")
        vm.check_consistent([], one_layer_each=False)


def test_issue_scenario_raw_commit_leaves_what_libvirt_refuses_and_the_preview_says_so(
    made_vm: Made,  # noqa: F811
) -> None:
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 3)
        chain = vm.chain("hda")  # vm.s3, vm.s2, vm.s1, base
        # What main did before the guard: a raw virDomainBlockCommit --delete of vm.s2.
        virsh(
            "blockcommit",
            vm.name,
            "hda",
            "--top",
            chain[1],
            "--base",
            chain[2],
            "--delete",
            "--wait",
        )
        for name in ("s3", "s2"):
            with pytest.raises(PlanError) as refused:
                snaps.plan_snapshot_delete(URI, vm.name, name)
            result = virsh("snapshot-delete", vm.name, name, check=False)
            assert result.returncode != 0
            assert str(refused.value) == virsh_error(result)
        assert "not the same" in virsh_error(virsh("snapshot-delete", vm.name, "s3", check=False))


@pytest.mark.parametrize("case", ["internal-parent", "internal-moved", "block-job"])
def test_libvirt_refusals_are_previewed_with_libvirts_message(
    made_vm: Made,  # noqa: F811
    case: str,
) -> None:
    with snap_vm(*made_vm, 1, True) as vm:
        if case == "block-job":
            with_snapshots(vm, 2)
            name = "s1"
            virsh("blockcommit", vm.name, "hda", "--active", "--shallow", "--wait")
        else:
            vm.write_next()
            virsh("snapshot-create-as", vm.name, "i1")  # internal, with the memory state
            vm.write_next()
            vm.snapshot("e1")
            name = "e1" if case == "internal-parent" else "i1"
        before = tree_checksums(vm.directory)
        with pytest.raises(PlanError) as refused:
            snaps.plan_snapshot_delete(URI, vm.name, name)
        result = virsh("snapshot-delete", vm.name, name, check=False)
        if case == "block-job":
            virsh("blockjob", vm.name, "hda", "--abort")
        assert result.returncode != 0
        assert str(refused.value) == virsh_error(result)
        expected = {
            "internal-parent": "deleting external snapshot that has internal snapshot as parent",
            "internal-moved": "for internal snapshot 'i1' is not the same as disk image",
            "block-job": "cannot delete external snapshots when there is another active block",
        }[case]
        assert expected in str(refused.value)
        if case != "block-job":
            assert tree_checksums(vm.directory).keys() == before.keys()


def test_unknown_snapshot_is_refused_with_libvirts_wording(made_vm: Made) -> None:  # noqa: F811
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 1)
        with pytest.raises(PlanError) as refused:
            snaps.plan_snapshot_delete(URI, vm.name, "nope")
        assert str(refused.value) == virsh_error(
            virsh("snapshot-delete", vm.name, "nope", check=False)
        )


def test_deleting_on_one_branch_warns_about_the_other_and_libvirt_agrees(
    made_vm: Made,  # noqa: F811
) -> None:
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 3)
        virsh("snapshot-current", vm.name, "s1")
        vm.snapshot("s4")  # a second branch under s1, on top of vm.s3 in the disk's chain
        plan = snaps.plan_snapshot_delete(URI, vm.name, "s3")
        assert any(n.startswith("snapshot s4's XML names") for n in plan.notes), plan.notes
        sink = RecordingSink()
        run_snapshot_delete(plan, sink, CancelToken())
        assert sink.outcome is not None and sink.outcome[0]
        # As the preview said: libvirt left s4 naming the deleted overlay, and refuses it now.
        with pytest.raises(PlanError) as refused:
            snaps.plan_snapshot_delete(URI, vm.name, "s4")
        result = virsh("snapshot-delete", vm.name, "s4", check=False)
        assert result.returncode != 0
        assert str(refused.value) == virsh_error(result)


class _StopsBeforeDroppingMetadata(RecordingSink):
    """Fails the job as a crash would, just before its METADATA_ONLY step."""

    def step_started(self, step: Step) -> None:
        if step.kind is StepKind.LIBVIRT_SNAPSHOT_DELETE:
            raise EngineError("interrupted before the metadata step (test)")
        super().step_started(step)


def test_dropping_metadata_is_a_journalled_step_that_resume_completes(
    made_vm: Made,  # noqa: F811
) -> None:
    from backchain.engines import journal
    from backchain.engines.libvirt import engine as lv
    from backchain.engines.runner import resume_job, run_plan

    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 4)
        chain = vm.chain("hda")  # vm.s4, vm.s3, vm.s2, vm.s1, base
        target = lv.LibvirtTarget(URI, vm.name, "hda")
        request = CommitRequest(image="", top=chain[1], base=chain[2], delete=True,
                                engine=EngineKind.LIBVIRT)  # fmt: skip
        plan = lv.plan_commit(target, request, drop_snapshot_metadata=True)
        assert plan.steps[-1].kind is StepKind.LIBVIRT_SNAPSHOT_DELETE
        with pytest.raises(EngineError):
            run_plan(plan, _StopsBeforeDroppingMetadata(), CancelToken(), target)
        assert not Path(chain[1]).exists()  # the commit ran; the metadata is still there
        assert vm.listed() == ["s1", "s2", "s3", "s4"]
        records = [r for r in journal.unfinished_jobs([chain[2]]) if r.plan == plan]
        assert len(records) == 1 and records[0].done == len(plan.steps) - 1
        sink = RecordingSink()
        resume_job(records[0], sink, CancelToken())
        assert sink.outcome is not None and sink.outcome[0]
        assert "Removed the metadata of libvirt snapshots s4, s3, s2." in sink.outcome[1]
        assert journal.unfinished_jobs([chain[2]]) == []
        vm.check_consistent(["s1"], one_layer_each=False)


def _pull_argv(vm_name: str, *extra: str) -> list[str]:
    return ["pull", "--connect", URI, "--domain", vm_name, "--disk", "hda", "--yes", *extra]


@pytest.mark.parametrize(
    ("running", "keep"),
    [(True, "s1"), (False, "s1"), (True, "flatten")],
    ids=["running", "shut-off", "running-flatten"],
)
def test_pull_guard_refuses_dropping_a_snapshotted_layer_until_metadata_may_go(
    made_vm: Made,  # noqa: F811
    running: bool,
    keep: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with snap_vm(*made_vm, 1, running) as vm:
        with_snapshots(vm, 3)
        chain = [Path(p) for p in vm.chain("hda")]  # vm.s3 (active), vm.s2, vm.s1, base
        # Pulling into vm.s3 down to vm.s1 takes vm.s2 out of the chain: s2 created it and it
        # holds s3's point in time. libvirt's pull does not touch the snapshot XML.
        base = ["--base", str(chain[2])] if keep == "s1" else []
        hit = ["s3", "s2"] if keep == "s1" else ["s3", "s2", "s1"]
        # libvirt's pull cannot delete the layers it leaves; qemu-img's (shut off) can.
        delete = [] if running else ["--delete"]
        before = tree_checksums(vm.directory)
        assert cli.main(_pull_argv(vm.name, *base, *delete)) == 2
        err = capsys.readouterr().err
        verb = "take" if running else "delete"
        assert f"this pull would {verb} vm" in err and ", ".join(hit) in err
        assert f"backchain snapshot-delete --connect {URI} --domain {vm.name} s3" in err
        assert tree_checksums(vm.directory) == before
        assert vm.listed() == ["s1", "s2", "s3"]

        plan_argv = ["plan", "--pull", *_pull_argv(vm.name, *base)[1:], "--json"]
        plan_argv.remove("--yes")
        assert cli.main([*plan_argv, "--drop-snapshot-metadata"]) == 0
        plan = json.loads(capsys.readouterr().out)
        note = f"Metadata dropped: libvirt snapshots {', '.join(hit)} name files this pull"
        assert plan["notes"][0].startswith(note)
        assert plan["steps"][-1]["snapshots"] == hit

        argv = _pull_argv(vm.name, *base, *delete, "--drop-snapshot-metadata")
        assert cli.main(argv) == 0
        assert "Removed the metadata of libvirt snapshots" in capsys.readouterr().out
        assert chain[1].exists() == running
        remaining = ["s1"] if keep == "s1" else []
        vm.check_consistent(remaining, one_layer_each=False)
        if not running:
            # libvirt 9.0 finds a shut-off domain's overlays only in its XML (the source).
            virsh("start", vm.name)
            vm.running = True
        for name in remaining:
            virsh("snapshot-delete", vm.name, name)
        vm.check_consistent([], one_layer_each=False)


@pytest.mark.parametrize("operation", ["commit", "pull"])
def test_offline_job_on_a_named_domains_files_is_guarded_and_refused_while_it_runs(
    made_vm: Made,  # noqa: F811
    operation: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with snap_vm(*made_vm, 1, False) as vm:
        with_snapshots(vm, 4)
        chain = [Path(p) for p in vm.chain("hda")]  # vm.s4 (source), vm.s3, vm.s2, vm.s1, base
        if operation == "commit":
            # IMAGE is vm.s3, no disk's source: vm.s3 into vm.s2, vm.s4 re-pointed, vm.s3 gone.
            image, extra, hit = chain[1], ["--base", str(chain[2])], "s4, s3, s2"
        else:
            # IMAGE is the disk's source: pull vm.s3 into it, keep vm.s2 below, delete vm.s3.
            image, extra, hit = chain[0], ["--base", str(chain[2])], "s4, s3"
        argv = [operation, str(image), "--connect", URI, "--domain", vm.name, *extra, "--delete"]
        before = tree_checksums(vm.directory)
        assert cli.main([operation, str(image), "--domain", vm.name, "--yes"]) == 2
        assert "add --connect URI" in capsys.readouterr().err
        virsh("start", vm.name)
        assert cli.main([*argv, "--yes"]) == 2
        err = capsys.readouterr().err
        assert f"domain '{vm.name}' is running and uses vm" in err and "(disk hda)" in err
        virsh("destroy", vm.name)
        assert cli.main([*argv, "--disk", "hda", "--yes"]) == 2
        assert "not both" in capsys.readouterr().err

        assert cli.main([*argv, "--yes"]) == 2
        err = capsys.readouterr().err
        assert f"libvirt snapshots {hit} of domain '{vm.name}'" in err
        assert "backchain snapshot-delete" in err and "--drop-snapshot-metadata" in err
        assert tree_checksums(vm.directory) == before
        assert vm.listed() == ["s1", "s2", "s3", "s4"]

        plan_argv = ["plan", *argv[1:], "--json", "--drop-snapshot-metadata"]
        plan_argv += ["--pull"] if operation == "pull" else []
        assert cli.main(plan_argv) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["engine"] == "libvirt"
        assert plan["steps"][0]["call"] == "virDomainGetState"
        assert plan["steps"][-1]["snapshots"] == hit.split(", ")

        assert cli.main([*argv, "--drop-snapshot-metadata", "--yes"]) == 0
        assert "Removed the metadata of libvirt snapshots" in capsys.readouterr().out
        assert not chain[1].exists()
        remaining = ["s1"] if operation == "commit" else ["s1", "s2"]
        vm.check_consistent(remaining, one_layer_each=False)
        virsh("start", vm.name)
        vm.running = True
        while remaining:
            virsh("snapshot-delete", vm.name, remaining.pop())
            vm.check_consistent(remaining, one_layer_each=False)


def test_a_plan_made_without_the_snapshots_is_refused_before_the_first_write(
    made_vm: Made,  # noqa: F811
) -> None:
    from backchain.engines.libvirt import engine as lv
    from backchain.engines.libvirt.read import domain_graph
    from backchain.engines.runner import run_plan

    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 2)
        chain = vm.chain("hda")  # vm.s2 (active), vm.s1, base
        target = lv.LibvirtTarget(URI, vm.name, "hda")
        graph, info, running = domain_graph(URI, vm.name, "hda")
        request = CommitRequest(image="", top=chain[1], base=chain[2], engine=EngineKind.LIBVIRT)
        # As the window plans on a graph it read before the snapshots were taken.
        unguarded = lv.plan_for_graph(target, graph, info, running, request)
        before = tree_checksums(vm.directory)
        with pytest.raises(PlanError, match="libvirt snapshots s2, s1 of domain"):
            run_plan(unguarded, RecordingSink(), CancelToken(), target)
        assert tree_checksums(vm.directory) == before
        vm.check_consistent(["s1", "s2"])


def test_a_collapse_over_snapshots_is_refused_with_what_a_collapse_can_do(
    made_vm: Made,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    with snap_vm(*made_vm, 2, True) as vm:
        with_snapshots(vm, 2)
        before = tree_checksums(vm.directory)
        argv = ["commit", "--connect", URI, "--domain", vm.name, "--all-disks", "--yes"]
        assert cli.main(argv) != 0
        err = capsys.readouterr()
        text = err.out + err.err
        for disk in vm.disks:
            assert f"{disk}: this commit would change" in text
            assert f"--disk {disk} --drop-snapshot-metadata" in text
        assert "A collapse does not drop snapshot metadata" in text
        assert "backchain snapshot-delete" in text
        assert tree_checksums(vm.directory) == before
        assert vm.listed() == ["s1", "s2"]
