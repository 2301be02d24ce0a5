"""libvirt domains: plan a disk's commit (running or shut off) and re-point a shut-off disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from backchain.core import plan as planner
from backchain.core.describe import finished_message
from backchain.core.errors import EngineError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, Operation, Step, StepKind
from backchain.core.valueclass import replace
from backchain.engines.base import ImageTarget, LibvirtTarget, Target
from backchain.engines.libvirt import snapshots as libvirt_snapshots
from backchain.engines.libvirt import steps as libvirt_steps
from backchain.engines.libvirt.jobs import RunningSession, set_speed
from backchain.engines.libvirt.read import (
    DEFAULT_URI,
    INSTALL_HINT,
    REMOTE_NOTE,
    DiskInfo,
    DomainInfo,
    domain_graph,
    domain_state,
    is_local,
    list_domains,
    lookup_domain,
    open_connection,
    read_domain_graph,
)
from backchain.engines.libvirt.repoint import repoint_disk
from backchain.engines.libvirt.snapshot_xml import (
    Snapshot,
    check_guard_still_holds,
    guarded,
    is_metadata_step,
)
from backchain.engines.libvirt.steps import RULES, index_error, libvirt_label
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.qemu_img.engine import QemuImgEngine, QemuImgSession, written_images
from backchain.engines.qemu_img.words import describe_state

__all__ = [
    "DEFAULT_URI",
    "INSTALL_HINT",
    "RULES",
    "DomainInfo",
    "LibvirtEngine",
    "LibvirtTarget",
    "active_layer",
    "libvirt_label",
    "list_domains",
    "plan_commit",
    "plan_for_graph",
    "read_domain_graph",
    "repoint_disk",
    "set_speed",
]


def check_indexes(graph: ImageGraph, request: CommitRequest) -> None:
    """A ``vda[N]`` that names another disk or no layer, refused in libvirt's words."""
    labels = {layer.extra.get("label") for layer in graph if layer.extra.get("label")}
    disks = sorted({label.split("[", 1)[0] for label in labels if label})
    for key in (request.top, request.base):
        if not key or key in labels or not disks:
            continue
        words = index_error(key, disks[0])
        if words is not None:
            raise PlanError(words)


def plan_running(graph: ImageGraph, request: CommitRequest) -> CommitPlan:
    """A running domain's plan on a graph: libvirt's rules, then virDomainBlockCommit's calls."""
    check_indexes(graph, request)
    request = replace(request, engine=EngineKind.LIBVIRT)
    plan = planner.plan(graph, request, RULES)
    if plan.operation is Operation.COMMIT and not request.keep_relative and plan.rebased:
        # Without VIR_DOMAIN_BLOCK_COMMIT_RELATIVE libvirt writes base's absolute name into the
        # overlay it re-points: preview what libvirt writes, not what qemu-img would.
        absolute = tuple(replace(r, backing_name=r.backing) for r in plan.rebased)
        plan = replace(plan, rebased=absolute)
    build = (
        libvirt_steps.pull_steps if plan.operation is Operation.PULL else libvirt_steps.commit_steps
    )
    return replace(plan, steps=build(plan, graph))


def plan_commit(
    target: LibvirtTarget,
    request: CommitRequest,
    *,
    repoint: bool = False,
    drop_snapshot_metadata: bool = False,
) -> CommitPlan:
    """The plan for one disk: virDomainBlockCommit when the domain runs, qemu-img when it is off.

    ``request.image`` is ignored (the disk's active layer is the chain); when top is the active
    layer of a running domain, ACTIVE is turned on and the plan says so. A commit that changes
    a file named by a libvirt snapshot is refused unless ``drop_snapshot_metadata``.
    """
    graph, info, running = domain_graph(target.uri, target.domain, target.disk)
    found = libvirt_snapshots.read_snapshots(target.uri, target.domain)
    drop = drop_snapshot_metadata
    return plan_for_graph(target, graph, info, running, request, repoint=repoint,
                          snapshots=found, drop_snapshot_metadata=drop)  # fmt: skip


def active_layer(graph: ImageGraph) -> str:
    """The disk's active layer in a graph read by domain_graph (its first labelled layer)."""
    fallback = graph.chain(graph.paths[0])[0].path if graph.paths else ""
    return next(
        (layer.path for layer in graph if layer.extra.get("label") and not layer.found_by_scan),
        fallback,
    )


def plan_for_graph(
    target: LibvirtTarget,
    graph: ImageGraph,
    info: DiskInfo,
    running: bool,
    request: CommitRequest,
    *,
    repoint: bool = False,
    snapshots: Sequence[Snapshot] | None = None,
    drop_snapshot_metadata: bool = False,
) -> CommitPlan:
    """plan_commit on a graph already read (the window plans on every click without I/O).

    With the domain's ``snapshots`` (read_snapshots), a commit that changes a file they name is
    refused unless ``drop_snapshot_metadata``; then the plan's last step drops their metadata.
    """
    if snapshots is not None:
        plan = plan_for_graph(target, graph, info, running, request, repoint=repoint)
        return guarded(plan, snapshots, target.uri, target.domain, drop_snapshot_metadata)
    local = is_local(target.uri)
    active_path = active_layer(graph)
    notes: list[str] = []
    if running:
        top = graph.find(request.top) if request.top is not None else None
        auto_active = request.operation is Operation.COMMIT and not request.active and (
            request.top is None or (
            top is not None and top.path == active_path))  # fmt: skip
        request = replace(request, image=active_path, engine=EngineKind.LIBVIRT,
                          active=request.active or auto_active)  # fmt: skip
        plan = plan_running(graph, request)
        if auto_active:
            notes.append("top is the active layer, so the commit is an active one (ACTIVE flag)")
        if not local:
            notes.append(REMOTE_NOTE)
        return replace(plan, notes=(*plan.notes, *notes))
    if not local:
        raise PlanError(
            f"domain '{target.domain}' is shut off on a remote host; Backchain commits shut-off "
            "domains with qemu-img, which needs the image files on this machine"
        )
    request = replace(request, image=active_path, engine=EngineKind.QEMU_IMG, active=False)
    offline = QemuImgEngine().prepare(graph, ImageTarget(active_path), request)
    if offline.operation is Operation.PULL:
        fmt = graph.layer(offline.image).format
        return libvirt_steps.shut_off_plan(offline, target.domain, info.target, False, fmt)
    if offline.deleted and offline.active_commit and not repoint:
        raise PlanError(
            f"cannot delete '{offline.top}': it is disk {info.target}'s source in domain "
            f"'{target.domain}'; add --repoint to switch the disk to base first"
        )
    base_format = graph.layer(offline.base).format
    return libvirt_steps.shut_off_plan(offline, target.domain, info.target, repoint, base_format)


def check_state(target: LibvirtTarget, *, want_running: bool) -> None:
    """Refuse when the domain's state is no longer the one the plan was made for."""
    conn = open_connection(target.uri)
    try:
        running, off = domain_state(lookup_domain(conn, target.domain))
    finally:
        conn.close()
    if want_running and not running:
        raise EngineError(
            f"domain '{target.domain}' is no longer running; make the plan again to commit offline"
        )
    if not want_running and not off:
        raise EngineError(
            f"domain '{target.domain}' is not shut off (it started since the plan was made); "
            "make the plan again to commit online"
        )


def _target(target: Target) -> LibvirtTarget:
    if not isinstance(target, LibvirtTarget):
        raise EngineError("a libvirt plan needs its target: LibvirtTarget(uri, domain, disk)")
    return target


def is_shut_off_plan(plan: CommitPlan) -> bool:
    """A shut-off domain's plan starts with the state check and runs qemu-img."""
    return bool(plan.steps) and plan.steps[0].kind is StepKind.LIBVIRT_STATE


class LibvirtEngine:
    """Commits a libvirt domain's disk: virDomainBlockCommit when it runs, qemu-img when off."""

    kind = EngineKind.LIBVIRT
    keeps_cancelled_record = True

    def read_graph(self, target: Target) -> ImageGraph:
        """The disk's chain from the domain XML, and its siblings on this machine."""
        lv = _target(target)
        return domain_graph(lv.uri, lv.domain, lv.disk)[0]

    def prepare(self, graph: ImageGraph, target: Target, request: CommitRequest) -> CommitPlan:
        """The disk's plan (reads the domain's state and disk info again)."""
        lv = _target(target)
        fresh, info, running = domain_graph(lv.uri, lv.domain, lv.disk)
        return plan_for_graph(lv, fresh, info, running, request)

    def written(self, plan: CommitPlan) -> Sequence[str]:
        """Every local file the job writes or removes."""
        return [p for p in written_images(plan) if os.path.isabs(p)]

    def preflight(self, plan: CommitPlan, target: Target) -> None:
        """The domain is still in the state the plan was made for; offline, the qemu-img check.

        A snapshot deletion: libvirt would still delete the snapshot as planned.
        """
        lv = _target(target)
        if libvirt_snapshots.is_snapshot_delete_plan(plan):
            libvirt_snapshots.check_still_planned(plan, lv.uri, lv.domain, resuming=False)
            return
        shut_off = is_shut_off_plan(plan)
        check_state(lv, want_running=not shut_off)
        found = libvirt_snapshots.read_snapshots(lv.uri, lv.domain)
        check_guard_still_holds(plan, found, lv.uri, lv.domain)
        if shut_off:
            QemuImgEngine().preflight(libvirt_steps.offline_part(plan), ImageTarget(plan.image))
            return
        # The running domain's disk must still read through the chain the plan was made for.
        graph, _info, _running = domain_graph(lv.uri, lv.domain, lv.disk, extents=False)
        chain = tuple(layer.path for layer in graph.chain(active_layer(graph)))
        if chain != plan.chain:
            raise PlanError(
                f"the chain of disk {lv.disk} in domain '{lv.domain}' changed since the plan was "
                "made; read it again and review the new plan"
            )

    def resume_check(self, plan: CommitPlan, done: int, target: Target) -> None:
        """A shut-off job's files are where it left them; a running one re-attaches."""
        lv = _target(target)
        if libvirt_snapshots.is_snapshot_delete_plan(plan):
            libvirt_snapshots.check_still_planned(plan, lv.uri, lv.domain, resuming=True)
            return
        shut_off = is_shut_off_plan(plan)
        check_state(lv, want_running=not shut_off)
        if shut_off:
            QemuImgEngine().resume_check(plan, done, ImageTarget(plan.image))

    @contextlib.contextmanager
    def session(self, plan: CommitPlan, target: Target) -> Iterator[LibvirtSession]:
        """A libvirt connection for a running domain; qemu-img processes for a shut-off one."""
        session = LibvirtSession(plan, _target(target))
        try:
            yield session
        finally:
            session.close()

    def state_after(self, plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
        """Where every file stands after ``done``."""
        name = os.path.basename
        if failed is not None and is_metadata_step(failed):
            return "The commit succeeded; the snapshots' metadata may still be there."
        if libvirt_snapshots.is_snapshot_delete_plan(plan):
            return (
                "libvirt keeps the snapshot until every disk's commit has ended; "
                f"'virsh snapshot-list {plan_domain(plan)}' shows where it stands."
            )
        if is_shut_off_plan(plan):
            return describe_state(plan, done, failed)
        name = os.path.basename
        if plan.operation is Operation.PULL:
            return f"{name(plan.top)} is still backed by its old chain and reads correctly."
        return f"{name(plan.top)} and everything above it still read correctly."


class LibvirtSession:
    """Runs a libvirt plan's steps, one at a time."""

    def __init__(self, plan: CommitPlan, target: LibvirtTarget) -> None:
        self.plan = plan
        self.target = target
        self.outcome: str | None = None
        snapshot_job = libvirt_snapshots.is_snapshot_delete_plan(plan)
        self._offline = QemuImgSession(plan) if is_shut_off_plan(plan) else None
        self._running = (
            None
            if self._offline or snapshot_job
            else RunningSession(plan, target.uri, target.domain)
        )

    def close(self) -> None:
        """Close the libvirt connection, if one was opened."""
        if self._running is not None:
            self._running.close()

    def run_step(self, index: int, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        """One step: a libvirt call, or a qemu-img process for a shut-off domain."""
        if step.kind is StepKind.LIBVIRT_SNAPSHOT_DELETE:
            self._snapshot_delete(step, sink, cancel)
            return
        if self._running is not None:
            self._running.run_step(index, step, sink, cancel)
            self.outcome = self._running.outcome
            return
        assert self._offline is not None
        if step.kind is StepKind.LIBVIRT_STATE:
            check_state(self.target, want_running=False)
        elif step.kind is StepKind.LIBVIRT_DEFINE:
            self._repoint(step, sink)
        else:
            self._offline.run_step(index, step, sink, cancel)

    def _repoint(self, step: Step, sink: ProgressSink) -> None:
        call = dict(step.call or {})
        disk = self.target.disk
        sink.logged(f"# virDomainDefineXML: disk {disk} source -> {call['source']}")
        try:
            repoint_disk(self.target.uri, self.target.domain, disk, str(call["source"]),
                         str(call["format"]))  # fmt: skip
        except EngineError as err:
            err.state = (
                f"{os.path.basename(self.plan.base)} holds the merged data. The domain still uses "
                f"{os.path.basename(self.plan.top)}; re-point disk {disk} yourself "
                f"(virsh edit {self.target.domain})."
            )
            raise
        if self.plan.operation is Operation.PULL:
            self.outcome = (f"Pulled into {os.path.basename(self.plan.top)}; disk {disk} of "
                            f"'{self.target.domain}' reads its new chain.")  # fmt: skip
            return
        self.outcome = (
            f"Committed {os.path.basename(self.plan.top)} into {os.path.basename(self.plan.base)}."
            f" Disk {disk} of '{self.target.domain}' now uses {call['source']}."
        )

    def _snapshot_delete(self, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        """virDomainSnapshotDelete: a snapshot's deletion, or the metadata a commit drops."""
        uri, domain = self.target.uri, self.target.domain
        if not is_metadata_step(step):
            self.outcome = libvirt_snapshots.run_snapshot_delete(uri, domain, step, sink, cancel)
            return
        dropped = libvirt_snapshots.drop_metadata(uri, domain, step, sink)
        self.outcome = f"{self.outcome or finished_message(self.plan)} {dropped}"


def plan_domain(plan: CommitPlan) -> str:
    """The domain a libvirt plan's calls name."""
    return next((str(s.call["domain"]) for s in plan.steps if s.call and "domain" in s.call),
                "DOMAIN")  # fmt: skip
