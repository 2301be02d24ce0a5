"""libvirt snapshot XML as data: roles, labels, libvirt 9.0's refusals, the guard's wording."""

from __future__ import annotations

import pytest

from backchain.core.codec import plan_from_record, plan_to_record
from backchain.core.errors import PlanError
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, Operation, StepKind
from backchain.core.valueclass import replace
from backchain.engines.base import LibvirtTarget
from backchain.engines.libvirt.snapshot_delete import SnapshotDeletePlan, merges, refusal
from backchain.engines.libvirt.snapshot_xml import (
    Snapshot,
    SnapshotRole,
    guard_check,
    guarded,
    is_metadata_step,
    leaves_first,
    parse_snapshot,
    roles_of,
    snapshot_label,
)

# The shape of `virsh snapshot-dumpxml` from libvirt 9.0, trimmed to what is read.
XML = """<domainsnapshot><name>{name}</name><state>disk-snapshot</state>{parent}
<creationTime>{created}</creationTime><memory snapshot='no'/>
<disks><disk name='hda' snapshot='{kind}' type='file'><driver type='qcow2'/>{source}</disk></disks>
<domain type='qemu'><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{point}'/><target dev='hda' bus='ide'/></disk></devices></domain>
</domainsnapshot>"""


def snap(
    name: str, parent: str | None, point: str, source: str | None, kind: str = "external"
) -> Snapshot:
    """A parsed snapshot of disk hda."""
    xml = XML.format(
        name=name,
        parent=f"<parent><name>{parent}</name></parent>" if parent else "",
        created=1796156476 + int(name[-1]),
        kind=kind,
        source=f"<source file='{source}'/>" if source else "",
        point=point,
    )
    return parse_snapshot(xml, current=name == "s3")


CHAIN = ["/vm/vm.s3", "/vm/vm.s2", "/vm/vm.s1", "/vm/vm.qcow2"]
SNAPS = [
    snap("s1", None, "/vm/vm.qcow2", "/vm/vm.s1"),
    snap("s2", "s1", "/vm/vm.s1", "/vm/vm.s2"),
    snap("s3", "s2", "/vm/vm.s2", "/vm/vm.s3"),
]


def test_each_layer_shows_the_snapshot_that_created_it_and_the_one_it_holds() -> None:
    assert [(s.name, r) for s, r in roles_of(SNAPS, "/vm/vm.s1")] == [
        ("s1", SnapshotRole.CREATED),
        ("s2", SnapshotRole.POINT_IN_TIME),
    ]
    assert snapshot_label(SNAPS[1]).startswith("s2 · 20")


def test_deleting_a_middle_snapshot_merges_its_overlay_into_its_point_in_time() -> None:
    found = merges(SNAPS[1], {"hda": CHAIN})
    assert [(m.top, m.base, m.active) for m in found] == [("/vm/vm.s2", "/vm/vm.s1", False)]
    assert merges(SNAPS[2], {"hda": CHAIN})[0].active


@pytest.mark.parametrize(
    ("running", "xml_chain", "header_chain", "expected"),
    [
        (True, CHAIN, CHAIN, None),
        (False, CHAIN[:1], CHAIN, "invalid argument: could not find base disk source in disk"),
        (True, ["/vm/vm.s3", "/vm/vm.s1", "/vm/vm.qcow2"], None, "operation failed: snapshot VM"),
    ],
    ids=["running", "shut-off-not-newest", "after-a-raw-commit"],
)
def test_refusals_read_like_libvirts(
    running: bool, xml_chain: list[str], header_chain: list[str] | None, expected: str | None
) -> None:
    target = SNAPS[1] if expected != "operation failed: snapshot VM" else SNAPS[2]
    message = refusal(
        SNAPS,
        target,
        running=running,
        xml_chains={"hda": xml_chain},
        header_chains={"hda": header_chain or xml_chain},
        block_job=False,
    )
    assert message == expected if expected is None else (message or "").startswith(expected)


def test_external_snapshot_over_an_internal_one_is_refused() -> None:
    internal = snap("i1", None, "/vm/vm.qcow2", None, kind="internal")
    external = snap("e2", "i1", "/vm/vm.qcow2", "/vm/vm.e2")
    message = refusal(
        [internal, external],
        external,
        running=True,
        xml_chains={"hda": ["/vm/vm.e2", "/vm/vm.qcow2"]},
        header_chains={"hda": ["/vm/vm.e2", "/vm/vm.qcow2"]},
        block_job=False,
    )
    assert message == (
        "Operation not supported: deleting external snapshot that has internal snapshot as "
        "parent not supported"
    )


def _plan(top: str, base: str) -> CommitPlan:
    return CommitPlan(
        CommitRequest(image=CHAIN[0]),
        "libvirt",
        CHAIN[0],
        tuple(CHAIN),
        top,
        base,
        (top,),
        (),
        (top,),
        (),
        (),
        (),
        None,
        (),
        (),
        False,
    )


def test_guard_names_the_snapshots_leaves_first_and_points_to_snapshot_delete() -> None:
    plan = _plan("/vm/vm.s2", "/vm/vm.s1")
    with pytest.raises(PlanError) as refused:
        guard_check(SNAPS, plan, "dom", "qemu:///system", drop_metadata=False)
    assert "snapshots s3, s2, s1 of domain 'dom'" in str(refused.value)
    assert "backchain snapshot-delete --connect qemu:///system --domain dom s3" in str(
        refused.value
    )
    assert guard_check(SNAPS, plan, "dom", "u", drop_metadata=True) == ("s3", "s2", "s1")
    assert leaves_first(SNAPS, ["s1", "s3"]) == ("s3", "s1")


def _pull(base: str, deleted: tuple[str, ...] = ()) -> CommitPlan:
    """A pull into the active vm.s3 that keeps ``base`` below it ("" flattens)."""
    end = CHAIN.index(base) if base else len(CHAIN)
    plan = replace(_plan(CHAIN[0], base), operation=Operation.PULL)
    return replace(plan, merged=tuple(CHAIN[1:end]), stale=(), deleted=deleted)


def test_pull_guard_counts_what_leaves_the_chain_not_the_base_that_stays() -> None:
    # vm.s2 leaves: s2 created it, s3's point in time is it; s1 (vm.s1 on vm.qcow2) stays whole.
    with pytest.raises(PlanError) as refused:
        guard_check(SNAPS, _pull("/vm/vm.s1"), "dom", "u", drop_metadata=False)
    assert str(refused.value).startswith("this pull would take vm.s2 out of the disk's chain,")
    assert "snapshots s3, s2 of domain 'dom'" in str(refused.value)
    assert "metadata after the pull" in str(refused.value)
    assert guard_check(SNAPS, _pull("/vm/vm.s1"), "dom", "u", drop_metadata=True) == ("s3", "s2")
    deleting = _pull("/vm/vm.s1", deleted=("/vm/vm.s2",))
    with pytest.raises(PlanError, match=r"^this pull would delete vm\.s2,"):
        guard_check(SNAPS, deleting, "dom", "u", drop_metadata=False)
    flatten = _pull("")
    assert guard_check(SNAPS, flatten, "dom", "u", drop_metadata=True) == ("s3", "s2", "s1")
    noted = guarded(_pull("/vm/vm.s1"), SNAPS, "u", "dom", True)
    assert noted.notes[0].startswith("Metadata dropped: libvirt snapshots s3, s2 name")
    assert "this pull changes" in noted.notes[0]


def test_dropping_metadata_is_the_plans_last_step_and_survives_the_journal() -> None:
    plan = guarded(_plan("/vm/vm.s2", "/vm/vm.s1"), SNAPS, "qemu:///system", "dom", True)
    last = plan.steps[-1]
    assert last.kind is StepKind.LIBVIRT_SNAPSHOT_DELETE and is_metadata_step(last)
    assert last.to_json() == {"call": "virDomainSnapshotDelete", "domain": "dom",
                              "snapshots": ["s3", "s2", "s1"],
                              "flags": ["VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY"]}  # fmt: skip
    assert plan.notes[0].startswith("Metadata dropped: libvirt snapshots s3, s2, s1")
    assert plan_from_record(plan_to_record(plan)) == plan


def test_a_snapshot_deletion_is_a_one_step_job_for_the_runner() -> None:
    found = merges(SNAPS[1], {"hda": CHAIN})
    merge = replace(found[0], plan=_plan("/vm/vm.s2", "/vm/vm.s1"))
    preview = SnapshotDeletePlan("qemu:///system", "dom", "s2", True, True, (merge,), ())
    job = preview.job()
    assert [s.kind for s in job.steps] == [StepKind.LIBVIRT_SNAPSHOT_DELETE]
    assert not is_metadata_step(job.steps[0])
    assert job.steps[0].to_json()["disks"] == [
        {"disk": "hda", "top": "/vm/vm.s2", "base": "/vm/vm.s1"}
    ]
    assert (job.top, job.base, job.deleted, job.engine) == (
        "/vm/vm.s2", "/vm/vm.s1", ("/vm/vm.s2",), EngineKind.LIBVIRT
    )  # fmt: skip
    assert preview.target == LibvirtTarget("qemu:///system", "dom", "hda")
    assert plan_from_record(plan_to_record(job)) == job
