"""libvirt snapshot XML as pure data: parsing, roles on layers, and the guard for plain commits."""

from __future__ import annotations

import enum
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence

from backchain.core.describe import snapshot_stamp
from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph, NamedSnapshot
from backchain.core.model import CommitPlan, Operation, Step, StepKind
from backchain.core.valueclass import replace, valueclass

METADATA_ONLY = "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY"

# libvirt prefixes each message with its error code's text; these are the codes its snapshot
# deletion uses (virerror.c), so that our refusals read exactly like virsh's.
UNSUPPORTED = "Operation not supported: "
FAILED = "operation failed: "
INVALID_ARG = "invalid argument: "
NOT_VALID = "Requested operation is not valid: "


class SnapshotRole(enum.StrEnum):
    """What a snapshot means to one image file."""

    CREATED = "created"
    """The overlay the snapshot created: the guest has written into it since."""
    POINT_IN_TIME = "point-in-time"
    """The image that holds the snapshot's state (the disk's source when it was taken)."""


class DiskLocation(enum.StrEnum):
    """A disk's ``snapshot=`` attribute in the snapshot XML."""

    EXTERNAL = "external"
    INTERNAL = "internal"
    NO = "no"
    MANUAL = "manual"


@valueclass(frozen=True)
class SnapshotDisk:
    """One ``<disk>`` of a snapshot: where its state went, and the overlay an external one made."""

    target: str
    location: DiskLocation
    source: str | None
    delete_in_progress: bool = False


@valueclass(frozen=True)
class Snapshot:
    """One libvirt snapshot as its XML describes it."""

    name: str
    created: int
    """Creation time, seconds since the epoch."""
    state: str
    parent: str | None
    current: bool
    disks: tuple[SnapshotDisk, ...]
    domain_chains: Mapping[str, tuple[str, ...]]
    """Each disk's chain in the snapshot's ``<domain>`` (source first): the point in time."""
    memory: str = "no"
    memory_file: str | None = None

    @property
    def external(self) -> bool:
        """virDomainSnapshotIsExternal: external memory, or any external disk."""
        return self.memory == "external" or any(
            d.location is DiskLocation.EXTERNAL for d in self.disks
        )

    def disk(self, target: str) -> SnapshotDisk | None:
        """The snapshot's entry for one disk target."""
        return next((d for d in self.disks if d.target == target), None)

    def point_in_time(self, target: str) -> str | None:
        """The image that held ``target``'s data when the snapshot was taken."""
        chain = self.domain_chains.get(target, ())
        return chain[0] if chain else None

    def roles(self) -> list[tuple[str, SnapshotRole]]:
        """(path, role) for every image this snapshot gives a role to."""
        found = []
        for disk in self.disks:
            if disk.location is DiskLocation.NO:
                continue
            if disk.location is DiskLocation.EXTERNAL and disk.source:
                found.append((disk.source, SnapshotRole.CREATED))
            point = self.point_in_time(disk.target)
            if point:
                found.append((point, SnapshotRole.POINT_IN_TIME))
        return found

    def named_files(self) -> set[str]:
        """Every file the snapshot's XML names: overlays, its domain's chains, the memory file."""
        names = {d.source for d in self.disks if d.source}
        for chain in self.domain_chains.values():
            names.update(chain)
        if self.memory_file:
            names.add(self.memory_file)
        return {os.path.realpath(n) for n in names if n}


def _chain_of(disk: ET.Element) -> tuple[str, ...]:
    """The source file and every ``<backingStore>`` source below it."""
    paths = []
    source = disk.find("source")
    if source is not None and source.get("file"):
        paths.append(source.get("file", ""))
    store = disk.find("backingStore")
    while store is not None:
        src = store.find("source")
        if src is None or not src.get("file"):
            break
        paths.append(src.get("file", ""))
        store = store.find("backingStore")
    return tuple(paths)


def parse_snapshot(xml: str, *, current: bool = False) -> Snapshot:
    """A Snapshot from virDomainSnapshotGetXMLDesc's document."""
    root = ET.fromstring(xml)
    disks = []
    for disk in root.findall("./disks/disk"):
        source = disk.find("source")
        location = disk.get("snapshot", "no")
        disks.append(
            SnapshotDisk(
                target=disk.get("name", ""),
                location=DiskLocation(location)
                if location in set(DiskLocation)
                else DiskLocation.NO,
                source=source.get("file") if source is not None else None,
                delete_in_progress=disk.find("snapshotDelete") is not None,
            )
        )
    chains = {}
    for disk in root.findall("./domain/devices/disk"):
        target = disk.find("target")
        if target is not None and disk.get("device", "disk") == "disk":
            chains[target.get("dev", "")] = _chain_of(disk)
    memory = root.find("memory")
    return Snapshot(
        name=root.findtext("name", ""),
        created=int(root.findtext("creationTime", "0") or 0),
        state=root.findtext("state", ""),
        parent=root.findtext("./parent/name"),
        current=current,
        disks=tuple(disks),
        domain_chains=chains,
        memory=memory.get("snapshot", "no") if memory is not None else "no",
        memory_file=memory.get("file") if memory is not None else None,
    )


def snapshot_label(snapshot: Snapshot) -> str:
    """``s2 · 2026-12-01 19:33``, as the CLI and the cards show a snapshot."""
    return snapshot_stamp(snapshot.name, snapshot.created)


def roles_of(snapshots: Iterable[Snapshot], path: str) -> list[tuple[Snapshot, SnapshotRole]]:
    """The snapshots that give the image at ``path`` a role, oldest first."""
    real = os.path.realpath(path)
    found = [
        (snap, role)
        for snap in snapshots
        for named, role in snap.roles()
        if os.path.realpath(named) == real
    ]
    return sorted(found, key=lambda item: (item[0].created, item[0].name))


def attach(graph: ImageGraph, snapshots: Sequence[Snapshot]) -> ImageGraph:
    """The graph with each layer's ``named_by``: the snapshots that created it or that it holds."""
    named = []
    for layer in graph:
        found = tuple(NamedSnapshot(s.name, str(role), s.created) for s, role in
                      roles_of(snapshots, layer.path))  # fmt: skip
        if found != layer.named_by:
            named.append(replace(layer, named_by=found))
    return graph.with_layers(named) if named else graph


def children(snapshots: Sequence[Snapshot], name: str) -> list[Snapshot]:
    """The snapshots whose parent is ``name``."""
    return [s for s in snapshots if s.parent == name]


def descendants(snapshots: Sequence[Snapshot], name: str) -> list[Snapshot]:
    """Every snapshot below ``name`` in the snapshot tree."""
    found: list[Snapshot] = []
    todo = children(snapshots, name)
    while todo:
        snap = todo.pop(0)
        found.append(snap)
        todo.extend(children(snapshots, snap.name))
    return found


def leaves_first(snapshots: Sequence[Snapshot], names: Iterable[str]) -> tuple[str, ...]:
    """``names`` ordered so that every snapshot comes before its ancestors."""
    by_name = {s.name: s for s in snapshots}

    def depth(name: str) -> int:
        count, parent = 0, by_name[name].parent if name in by_name else None
        while parent is not None and parent in by_name:
            count, parent = count + 1, by_name[parent].parent
        return count

    return tuple(sorted(set(names), key=lambda n: (-depth(n), n)))


# -- the guard for plain commits ---------------------------------------------------------------


def changed_files(plan: CommitPlan) -> set[str]:
    """Every file a commit writes, invalidates, leaves stale, deletes or puts at risk."""
    paths = {plan.base, *plan.merged, *plan.stale, *plan.deleted}
    paths.update(a.image for a in plan.invalid)
    paths.update(a.image for a in plan.at_risk if a.bytes is None or a.bytes > 0)
    return {os.path.realpath(p) for p in paths}


def hit_files(snap: Snapshot, plan: CommitPlan) -> set[str]:
    """The files of ``snap`` that the plan breaks for libvirt.

    A commit: any file the snapshot's XML names that the commit changes. A pull changes no
    file's view, but libvirt's snapshot deletion needs each overlay a snapshot created to be in
    the disk's chain with its point in time right below it (qemuSnapshotDeleteExternalPrepare),
    and virDomainBlockPull never rewrites snapshot XML: a snapshot is broken when its overlay
    or its point in time leaves the chain, or when a file its XML names is deleted. Base and
    top stay in the chain; top's new backing file is base only when top's old one left it.
    """
    if plan.operation is not Operation.PULL:
        return changed_files(plan) & snap.named_files()
    removed = {os.path.realpath(p) for p in plan.merged}
    deleted = {os.path.realpath(p) for p in plan.deleted}
    roles = {os.path.realpath(path) for path, _role in snap.roles()}
    return (roles & removed) | (snap.named_files() & deleted)


def _what(plan: CommitPlan, files: Sequence[str]) -> str:
    names = ", ".join(os.path.basename(f) for f in files)
    if plan.operation is not Operation.PULL:
        return f"this commit would change {names}"
    gone = {os.path.realpath(p) for p in plan.deleted}
    if gone >= set(files):
        return f"this pull would delete {names}"
    return f"this pull would take {names} out of the disk's chain"


class SnapshotGuardError(PlanError):
    """The guard's refusal: the snapshots a plain commit or pull would break, leaves first."""

    def __init__(self, message: str, names: Sequence[str], what: str) -> None:
        super().__init__(message)
        self.names = tuple(names)
        self.what = what
        """``this commit would change vm.s2`` (the message's first words)."""


def guard_check(
    snapshots: Sequence[Snapshot], plan: CommitPlan, domain: str, uri: str, drop_metadata: bool
) -> tuple[str, ...]:
    """The snapshots whose files the commit or pull breaks (leaves first); PlanError if not
    allowed."""
    hit = {s.name: sorted(hit_files(s, plan)) for s in snapshots}
    hit = {name: files for name, files in hit.items() if files}
    if not hit:
        return ()
    names = leaves_first(snapshots, hit)
    if drop_metadata:
        return names
    files = sorted({f for found in hit.values() for f in found})
    operation = "pull" if plan.operation is Operation.PULL else "commit"
    what = _what(plan, files)
    raise SnapshotGuardError(
        f"{what}, which "
        f"libvirt snapshot{'s' if len(names) > 1 else ''} {', '.join(names)} of domain "
        f"'{domain}' name{'' if len(names) > 1 else 's'}, and libvirt could no longer delete "
        f"{'them' if len(names) > 1 else 'it'}. Delete snapshots the libvirt way, newest first "
        f"(backchain snapshot-delete --connect {uri} --domain {domain} {names[0]}), or add "
        f"--drop-snapshot-metadata to remove their metadata after the {operation}",
        names,
        what,
    )


def guard_note(names: Sequence[str], operation: Operation = Operation.COMMIT) -> str:
    """The plan's first note when dropping metadata lets a commit or pull go ahead."""
    what = "pull" if operation is Operation.PULL else "commit"
    return (
        f"Metadata dropped: libvirt snapshot{'s' if len(names) > 1 else ''} "
        f"{', '.join(names)} name files this {what} changes; after it succeeds their metadata "
        f"is removed ({METADATA_ONLY}), and the data they held is no longer a snapshot"
    )


def _real(path: str | None) -> str | None:
    return os.path.realpath(path) if path else path


def normalised(snap: Snapshot) -> Snapshot:
    """Paths resolved as the image graph resolves them, so that they compare with its layers."""
    disks = tuple(replace(d, source=_real(d.source)) for d in snap.disks)
    chains = {t: tuple(os.path.realpath(p) for p in c if p) for t, c in snap.domain_chains.items()}
    return replace(snap, disks=disks, domain_chains=chains)


def metadata_step(domain: str, names: Sequence[str]) -> Step:
    """virDomainSnapshotDelete with METADATA_ONLY for each snapshot, leaves first."""
    call = {"call": StepKind.LIBVIRT_SNAPSHOT_DELETE.value, "domain": domain,
            "snapshots": list(names), "flags": [METADATA_ONLY]}  # fmt: skip
    return Step(StepKind.LIBVIRT_SNAPSHOT_DELETE, call=call)


def dropped_snapshots(plan: CommitPlan) -> tuple[str, ...]:
    """The snapshots whose metadata the plan's last step removes (--drop-snapshot-metadata)."""
    if not plan.steps or not is_metadata_step(plan.steps[-1]):
        return ()
    return tuple(str(n) for n in (plan.steps[-1].call or {}).get("snapshots", []))


def is_metadata_step(step: Step) -> bool:
    """The step that drops snapshot metadata after a commit (not a snapshot deletion)."""
    flags = (step.call or {}).get("flags")
    return (
        step.kind is StepKind.LIBVIRT_SNAPSHOT_DELETE
        and isinstance(flags, list)
        and METADATA_ONLY in flags
    )


def guarded(
    plan: CommitPlan, snapshots: Sequence[Snapshot], uri: str, domain: str, drop_metadata: bool
) -> CommitPlan:
    """The plan refused by the guard, or with the snapshots it drops listed first and dropped
    by a last step (so that the runner, the journal and resume see it)."""
    found = tuple(normalised(s) for s in snapshots)
    names = guard_check(found, plan, domain, uri, drop_metadata)
    if not names:
        return plan
    return replace(plan, steps=(*plan.steps, metadata_step(domain, names)),
                   notes=(guard_note(names, plan.operation), *plan.notes))  # fmt: skip


def check_guard_still_holds(
    plan: CommitPlan, snapshots: Sequence[Snapshot], uri: str, domain: str
) -> None:
    """Just before the first write: no snapshot the job would break is missing from the plan
    (one taken after the plan was made, or a plan made without the domain's snapshots)."""
    found = tuple(normalised(s) for s in snapshots)
    hit = guard_check(found, plan, domain, uri, drop_metadata=True)
    new = [name for name in hit if name not in dropped_snapshots(plan)]
    if new:
        guard_check([s for s in found if s.name in new], plan, domain, uri, drop_metadata=False)
