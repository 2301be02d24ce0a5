"""What libvirt 9.0's virDomainSnapshotDelete does and refuses, as pure data (qemu_snapshot.c)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from backchain.core.describe import consequences
from backchain.core.model import (
    Affected,
    CommitPlan,
    CommitRequest,
    EngineKind,
    OnReady,
    Step,
    StepKind,
)
from backchain.core.valueclass import field, valueclass
from backchain.engines.base import LibvirtTarget
from backchain.engines.libvirt.snapshot_xml import (
    FAILED,
    INVALID_ARG,
    NOT_VALID,
    UNSUPPORTED,
    DiskLocation,
    Snapshot,
    children,
    descendants,
)

Chains = Mapping[str, Sequence[str]]


@valueclass(frozen=True)
class DiskMerge:
    """One disk of an external snapshot: its overlay is committed into the point-in-time image."""

    disk: str
    top: str
    """The overlay the snapshot created; libvirt commits it and deletes it."""
    base: str
    """The image that holds the snapshot's point in time; it receives top's data."""
    active: bool
    """Top is the disk's active layer: an active commit, pivoted to base when ready."""
    plan: CommitPlan | None = None
    """The same commit as Backchain plans it: bytes, siblings at risk, re-pointed overlays."""


def _parent_snapshot_for_disk(
    snapshots: Sequence[Snapshot], snap: Snapshot, disk: str
) -> Snapshot | None:
    """qemuSnapshotFindParentSnapForDisk: the nearest ancestor that snapshotted ``disk``."""
    by_name = {s.name: s for s in snapshots}
    parent = by_name.get(snap.parent or "")
    while parent is not None:
        entry = parent.disk(disk)
        if entry is not None and entry.location is not DiskLocation.NO:
            return parent
        parent = by_name.get(parent.parent or "")
    return None


def _check_disk(
    snapshots: Sequence[Snapshot], snap: Snapshot, disk: str, chain: Sequence[str], live: bool
) -> str | None:
    """qemuSnapshotDeleteExternalPrepareData for one disk; ``live``: QEMU has the chain open."""
    entry = snap.disk(disk)
    assert entry is not None and entry.source is not None
    if entry.delete_in_progress:
        return f"{NOT_VALID}snapshot disk '{disk}' was target of not completed snapshot delete"
    if not chain:
        return f"{INVALID_ARG}disk '{disk}' not found in domain"
    if entry.source not in chain:
        return f"{INVALID_ARG}could not find base disk source in disk source chain"
    point = snap.point_in_time(disk)
    if disk not in snap.domain_chains:
        return f"{FAILED}failed to find disk '{disk}' in snapshot VM XML"
    if live:
        below = list(chain)[list(chain).index(entry.source) + 1 :]
        if not below:
            return f"{FAILED}failed to find parent disk source in backing chain"
        if below[0] != point:
            return f"{FAILED}snapshot VM disk source and parent disk source are not the same"
    parent = _parent_snapshot_for_disk(snapshots, snap, disk)
    if parent is not None and not parent.external:
        return (
            f"{UNSUPPORTED}deleting external snapshot that has internal snapshot as parent "
            "not supported"
        )
    return None


def refusal(
    snapshots: Sequence[Snapshot],
    snap: Snapshot,
    *,
    running: bool,
    xml_chains: Chains,
    header_chains: Chains,
    block_job: bool,
) -> str | None:
    """libvirt 9.0's own message when it refuses to delete ``snap``, or None.

    ``xml_chains`` are the disks' chains in the domain XML (a shut-off domain's has only the
    source); ``header_chains`` are the chains in the image headers, which QEMU opens when libvirt
    starts it paused to delete a shut-off domain's snapshot.
    """
    if not snap.external:
        if running:
            for entry in snap.disks:
                current = xml_chains.get(entry.target, ())
                if not current or current[0] != snap.point_in_time(entry.target):
                    return (
                        f"{UNSUPPORTED}disk image '{entry.target}' for internal snapshot "
                        f"'{snap.name}' is not the same as disk image currently used by VM"
                    )
        return None
    if block_job:
        return (
            f"{UNSUPPORTED}cannot delete external snapshots when there is another active block job"
        )
    disks = [d.target for d in snap.disks if d.location is DiskLocation.EXTERNAL and d.source]
    passes = [(xml_chains, running)] + ([] if running else [(header_chains, True)])
    for chains, live in passes:
        for disk in disks:
            message = _check_disk(snapshots, snap, disk, chains.get(disk, ()), live)
            if message is not None:
                return message
    return None


def merges(snap: Snapshot, header_chains: Chains) -> list[DiskMerge]:
    """Each external disk's commit: the snapshot's overlay into the image below it, then DELETE."""
    found = []
    for entry in snap.disks:
        if entry.location is not DiskLocation.EXTERNAL or not entry.source:
            continue
        chain = list(header_chains.get(entry.target, ()))
        if entry.source not in chain or chain.index(entry.source) + 1 >= len(chain):
            continue
        position = chain.index(entry.source)
        found.append(DiskMerge(entry.target, entry.source, chain[position + 1], position == 0))
    return found


def metadata_effects(snapshots: Sequence[Snapshot], snap: Snapshot) -> list[str]:
    """What virDomainSnapshotDelete changes in the other snapshots' metadata."""
    name = os.path.basename
    lines = []
    for child in children(snapshots, snap.name):
        new_parent = f"parent {snap.parent}" if snap.parent else "no parent (a root)"
        lines.append(f"snapshot {child.name} gets {new_parent}")
    if snap.external:
        for later in descendants(snapshots, snap.name):
            for entry in snap.disks:
                point = snap.point_in_time(entry.target)
                if entry.source and later.point_in_time(entry.target) == entry.source and point:
                    lines.append(
                        f"snapshot {later.name}'s XML: disk {entry.target} now names "
                        f"{name(point)} instead of {name(entry.source)}"
                    )
    if snap.current:
        lines.append(f"the current snapshot becomes {snap.parent or 'none'}")
    return lines


def stranded(
    snapshots: Sequence[Snapshot], snap: Snapshot, found: Sequence[DiskMerge]
) -> list[str]:
    """Warnings for snapshots outside ``snap``'s subtree that the deletion leaves wrong.

    libvirt 9.0 rewrites only the XML of ``snap``'s descendants: another branch's snapshot that
    names a deleted overlay can then no longer be deleted, and one whose point in time is a
    base that receives data no longer holds its state.
    """
    name = os.path.basename
    updated = {s.name for s in descendants(snapshots, snap.name)} | {snap.name}
    removed = {os.path.realpath(m.top) for m in found}
    lines = []
    for other in snapshots:
        if other.name in updated:
            continue
        gone = sorted(removed & other.named_files())
        if gone:
            lines.append(
                f"snapshot {other.name}'s XML names {', '.join(name(g) for g in gone)}, which "
                f"this deletion removes; libvirt does not update it (it is not below "
                f"{snap.name}), so {other.name} can no longer be deleted afterwards"
            )
        for merge in found:
            if os.path.realpath(other.point_in_time(merge.disk) or "") == os.path.realpath(
                merge.base
            ):
                lines.append(
                    f"snapshot {other.name}'s point in time, {name(merge.base)}, receives "
                    f"{name(merge.top)}'s data: {other.name} no longer holds its state"
                )
    return lines


@valueclass(frozen=True)
class SnapshotDeletePlan:
    """The preview of one virDomainSnapshotDelete, and the call that carries it out."""

    uri: str
    domain: str
    snapshot: str
    running: bool
    external: bool
    merges: tuple[DiskMerge, ...]
    metadata: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def step(self) -> Step:
        """The one API call: virDomainSnapshotDelete with no flags; ``disks``: its block commits."""
        call = {
            "call": StepKind.LIBVIRT_SNAPSHOT_DELETE.value,
            "domain": self.domain,
            "snapshot": self.snapshot,
            "flags": 0,
            "disks": [{"disk": m.disk, "top": m.top, "base": m.base} for m in self.merges],
        }
        return Step(StepKind.LIBVIRT_SNAPSHOT_DELETE, call=call)

    @property
    def target(self) -> LibvirtTarget:
        """Where the job runs: the domain (its disk: the first one that merges)."""
        return LibvirtTarget(self.uri, self.domain, self.merges[0].disk if self.merges else "")

    def job(self) -> CommitPlan:
        """The deletion as a plan the runner runs: its one step, the files libvirt merges.

        Top and base are the first disk's; ``merged`` and ``deleted`` hold every disk's overlay,
        so that the runner locks them all and the journal names them.
        """
        plans = [m.plan for m in self.merges if m.plan is not None]
        first = self.merges[0] if self.merges else None
        top, base = (first.top, first.base) if first else ("", "")
        image = plans[0].image if plans else top
        request = CommitRequest(image=image, top=top or None, base=base or None,
                                delete=bool(self.merges), on_ready=OnReady.PIVOT,
                                engine=EngineKind.LIBVIRT)  # fmt: skip

        def joined(field_name: str) -> tuple[Any, ...]:
            return tuple(x for p in plans for x in getattr(p, field_name))

        sizes = [p.bytes_to_copy for p in plans]
        return CommitPlan(
            request=request,
            engine=EngineKind.LIBVIRT,
            image=image,
            chain=plans[0].chain if plans else (),
            top=top,
            base=base,
            merged=tuple(m.top for m in self.merges),
            invalid=tuple(a for a in joined("invalid") if isinstance(a, Affected)),
            stale=joined("stale"),
            rebased=joined("rebased"),
            at_risk=tuple(a for a in joined("at_risk") if isinstance(a, Affected)),
            deleted=tuple(m.top for m in self.merges),
            bytes_to_copy=None if None in sizes else sum(s or 0 for s in sizes),
            advice=(),
            steps=(self.step,),
            active_commit=any(m.active for m in self.merges),
            notes=(*self.metadata, *self.notes),
        )

    def lines(self) -> list[str]:
        """The preview in words, per disk, with the same wording as a commit's."""
        name = os.path.basename
        out = [f"Deleting snapshot {self.snapshot} of domain '{self.domain}':"]
        if not self.running and self.merges:
            out.append(
                "  the domain is shut off: libvirt starts its QEMU paused for the "
                "commits and stops it afterwards"
            )
        for merge in self.merges:
            kind = "active commit, pivoted to base" if merge.active else "commit"
            out.append(
                f"  disk {merge.disk}: {name(merge.top)} is merged into "
                f"{name(merge.base)} ({kind}), then deleted"
            )
            for line in consequences(merge.plan) if merge.plan else []:
                out.append(f"    {line}")
        out += [f"  {line}" for line in self.metadata]
        out += [f"  note: {line}" for line in self.notes]
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``plan --delete-snapshot --json`` object."""
        return {
            "uri": self.uri,
            "domain": self.domain,
            "snapshot": self.snapshot,
            "running": self.running,
            "external": self.external,
            "disks": [
                {
                    "disk": m.disk,
                    "top": m.top,
                    "base": m.base,
                    "active": m.active,
                    "plan": m.plan.to_json() if m.plan else None,
                }
                for m in self.merges
            ],
            "metadata": list(self.metadata),
            "notes": list(self.notes),
            "steps": [self.step.to_json()],
        }
