"""libvirt snapshots: read them, preview and run virDomainSnapshotDelete, guard plain commits."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from backchain.core import libvirt_snapshot_delete as deletion
from backchain.core.errors import BackchainError, EngineError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.libvirt_snapshot_delete import DiskMerge, SnapshotDeletePlan
from backchain.core.libvirt_snapshots import (
    METADATA_ONLY,
    Snapshot,
    guard_check,
    guard_note,
    leaves_first,
    parse_snapshot,
)
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady, Step
from backchain.core.plan import plan as make_plan
from backchain.engines.libvirt_jobs import ensure_event_loop
from backchain.engines.libvirt_read import (
    domain_graph,
    domain_state,
    is_local,
    libvirt_error,
    lookup_domain,
    open_connection,
    parse_disks,
    require_libvirt,
)
from backchain.engines.progress import CancelToken, ProgressSink

DROP_STEP = "virDomainSnapshotDelete"
_POLL_SECONDS = 0.2
_FINAL_EVENT_SECONDS = 5.0


def _snapshots_of(dom: Any) -> tuple[Snapshot, ...]:
    libvirt = require_libvirt()
    try:
        found = [
            parse_snapshot(s.getXMLDesc(0), current=bool(s.isCurrent(0)))
            for s in dom.listAllSnapshots(0)
        ]
    except libvirt.libvirtError as err:
        raise libvirt_error(err, "listing the domain's snapshots") from err
    return tuple(sorted(found, key=lambda s: (s.created, s.name)))


def read_snapshots(uri: str, domain: str) -> tuple[Snapshot, ...]:
    """Every snapshot of ``domain`` (listAllSnapshots and each one's XML), oldest first."""
    conn = open_connection(uri)
    try:
        return _snapshots_of(lookup_domain(conn, domain))
    finally:
        conn.close()


def _real(path: str) -> str:
    return os.path.realpath(path) if path else path


def _normalised(snap: Snapshot) -> Snapshot:
    """Paths resolved as the image graph resolves them, so that they compare with its layers."""
    disks = tuple(replace(d, source=_real(d.source) if d.source else None) for d in snap.disks)
    chains = {t: tuple(_real(p) for p in c) for t, c in snap.domain_chains.items()}
    return replace(snap, disks=disks, domain_chains=chains)


def _domain_facts(
    uri: str, domain: str
) -> tuple[bool, dict[str, tuple[str, ...]], bool, tuple[Snapshot, ...]]:
    """(running, each disk's chain in the domain XML, a block job runs, the snapshots)."""
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        running, _off = domain_state(dom)
        disks = parse_disks(dom.XMLDesc(0))
        chains = {d.target: tuple(_real(x.path) for x in d.chain) for d in disks}
        job = False
        if running:
            for disk in disks:
                try:
                    job = job or bool(dom.blockJobInfo(disk.target, 0))
                except libvirt.libvirtError as err:
                    raise libvirt_error(err, f"reading block jobs of {disk.target}") from err
        return running, chains, job, tuple(_normalised(s) for s in _snapshots_of(dom))
    finally:
        conn.close()


def _disk_plan(graph: ImageGraph, merge: DiskMerge) -> tuple[CommitPlan, str | None]:
    """Backchain's own plan for libvirt's commit on one disk (DELETE, pivot when active)."""
    active = graph.chain(merge.top)[0].path if merge.active else None
    chain_top = active or next(
        (layer.path for layer in graph if layer.extra.get("label") and not layer.found_by_scan),
        merge.top,
    )
    request = CommitRequest(
        image=chain_top,
        top=merge.top,
        base=merge.base,
        delete=True,
        active=merge.active,
        on_ready=OnReady.PIVOT,
        engine=EngineKind.LIBVIRT,
    )
    try:
        return replace(make_plan(graph, request), advice=()), None
    except PlanError as err:
        # libvirt 9.0 deletes the overlay whatever still depends on it: show the commit
        # without our DELETE refusal, and say what is left dangling.
        kept = make_plan(graph, replace(request, delete=False))
        note = f"libvirt deletes {os.path.basename(merge.top)} anyway ({err})"
        return replace(kept, deleted=(merge.top,), advice=()), note


def plan_snapshot_delete(uri: str, domain: str, name: str) -> SnapshotDeletePlan:
    """The preview of virDomainSnapshotDelete(name), or libvirt's own refusal as a PlanError."""
    running, xml_chains, job, snapshots = _domain_facts(uri, domain)
    snap = next((s for s in snapshots if s.name == name), None)
    if snap is None:
        raise PlanError(
            f"Domain snapshot not found: no domain snapshot with matching name '{name}'"
        )
    graphs: dict[str, ImageGraph] = {}
    header_chains: dict[str, tuple[str, ...]] = {}
    for entry in snap.disks:
        if entry.source and entry.target in xml_chains:
            graph, _info, _running = domain_graph(uri, domain, entry.target)
            labelled = [x.path for x in graph if x.extra.get("label") and not x.found_by_scan]
            graphs[entry.target] = graph
            header_chains[entry.target] = tuple(labelled)
    message = deletion.refusal(
        snapshots,
        snap,
        running=running,
        xml_chains=xml_chains,
        header_chains=header_chains,
        block_job=job,
    )
    if message is not None:
        raise PlanError(message)
    merges, notes = [], []
    for merge in deletion.merges(snap, header_chains):
        plan, note = _disk_plan(graphs[merge.disk], merge)
        merges.append(replace(merge, plan=plan))
        notes += [note] if note else []
    notes += deletion.stranded(snapshots, snap, merges)
    if not snap.external:
        notes.append(
            f"internal snapshot: libvirt removes {name} from the snapshot table of "
            "each disk image; no file is merged or deleted"
        )
    if not is_local(uri):
        notes.append("remote host: the chains are what libvirt's XML says")
    return SnapshotDeletePlan(
        uri,
        domain,
        name,
        running,
        snap.external,
        tuple(merges),
        tuple(deletion.metadata_effects(snapshots, snap)),
        tuple(notes),
    )


def _follow_jobs(
    dom: Any,
    plan: SnapshotDeletePlan,
    sink: ProgressSink,
    events: queue.Queue[tuple[str, str]],
    worker: threading.Thread,
    failure: list[BaseException],
) -> None:
    """Report each disk's job from block-job events and virDomainGetBlockJobInfo until done."""
    last: dict[str, tuple[int, int]] = {}
    pending = {merge.disk for merge in plan.merges}
    deadline: float | None = None
    while pending and (deadline is None or time.monotonic() < deadline):
        worker.join(_POLL_SECONDS)
        if failure:
            break  # libvirt refused or failed: the error says why
        if not worker.is_alive() and deadline is None:
            # The call has returned; each disk's final event follows at once, unless lost.
            deadline = time.monotonic() + _FINAL_EVENT_SECONDS
        while not events.empty():
            disk, status = events.get()
            sink.logged(f"{disk}: block job {status}")
            done = last.get(disk, (1, 1))[1]
            if status in ("ready", "completed"):
                sink.advanced(done, done, f"{disk} {'ready' if status == 'ready' else 'done'}")
            if status in ("completed", "failed", "cancelled"):
                pending.discard(disk)
        if worker.is_alive():
            _poll_jobs(dom, plan, sink, last)
    worker.join()


def _poll_jobs(
    dom: Any, plan: SnapshotDeletePlan, sink: ProgressSink, last: dict[str, tuple[int, int]]
) -> None:
    """virDomainGetBlockJobInfo for each disk; report a disk whose figures moved."""
    libvirt = require_libvirt()
    for merge in plan.merges:
        try:
            info = dom.blockJobInfo(merge.disk, libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES)
        except libvirt.libvirtError:
            continue  # the domain may have gone (a shut-off domain's QEMU stopping)
        if info and (int(info["cur"]), int(info["end"])) != last.get(merge.disk):
            last[merge.disk] = (int(info["cur"]), int(info["end"]))
            sink.advanced(*last[merge.disk], f"{merge.disk} commit")


def run_snapshot_delete(plan: SnapshotDeletePlan, sink: ProgressSink, cancel: CancelToken) -> str:
    """virDomainSnapshotDelete(plan.snapshot), following each disk's block job; the outcome."""
    libvirt = require_libvirt()
    if cancel.cancelled:
        raise EngineError("cancelled before the snapshot deletion started")
    ensure_event_loop()
    conn = open_connection(plan.uri)
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    names = {
        libvirt.VIR_DOMAIN_BLOCK_JOB_READY: "ready",
        libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED: "failed",
        libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED: "completed",
        libvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED: "cancelled",
    }
    failure: list[BaseException] = []
    callback = None
    try:
        dom = lookup_domain(conn, plan.domain)
        callback = conn.domainEventRegisterAny(
            dom,
            libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
            lambda _c, _d, disk, _t, status, _o: events.put((disk, names.get(status, str(status)))),
            None,
        )
        snapshot = dom.snapshotLookupByName(plan.snapshot, 0)
        if plan.merges and plan.merges[0].plan is not None:
            sink.started(plan.merges[0].plan)
        sink.step_started(plan.step)
        sink.logged(f"# virDomainSnapshotDelete({plan.snapshot!r}, flags=0)")

        def work() -> None:  # runs in the delete thread; the call blocks until libvirt is done
            try:
                snapshot.delete(0)
            except BaseException as err:  # reported below, on the calling thread
                failure.append(err)

        worker = threading.Thread(target=work, name="backchain-snapshot-delete")
        worker.start()
        _follow_jobs(dom, plan, sink, events, worker, failure)
        if failure:
            raise failure[0]
    except libvirt.libvirtError as err:
        error = libvirt_error(err, f"virDomainSnapshotDelete {plan.snapshot}")
        sink.finished(False, error.message)
        raise error from err
    finally:
        if callback is not None:
            try:
                conn.domainEventDeregisterAny(callback)
            except libvirt.libvirtError:
                pass  # the connection may already be gone
        conn.close()
    message = _outcome(plan)
    sink.finished(True, message)
    return message


def _outcome(plan: SnapshotDeletePlan) -> str:
    name = os.path.basename
    parts = [f"Deleted snapshot {plan.snapshot} of '{plan.domain}'."]
    for merge in plan.merges:
        parts.append(
            f"{merge.disk}: merged {name(merge.top)} into {name(merge.base)} and "
            f"deleted {name(merge.top)}."
        )
    return " ".join(parts)


# -- the guard for plain commits ---------------------------------------------------------------


def snapshot_guard(
    target_uri: str, domain: str, plan: CommitPlan, drop_metadata: bool
) -> tuple[str, ...]:
    """The snapshots whose files a libvirt commit changes (to drop after it), or PlanError.

    Refused unless ``drop_metadata``: the message names the snapshots and points to
    ``backchain snapshot-delete``.
    """
    return guard_check(
        _normal(read_snapshots(target_uri, domain)), plan, domain, target_uri, drop_metadata
    )


def _normal(snapshots: Sequence[Snapshot]) -> tuple[Snapshot, ...]:
    return tuple(_normalised(s) for s in snapshots)


def guarded(
    plan: CommitPlan, snapshots: Sequence[Snapshot], uri: str, domain: str, drop_metadata: bool
) -> CommitPlan:
    """The plan refused by the guard, or listing first the snapshots it drops, and the step."""
    names = guard_check(_normal(snapshots), plan, domain, uri, drop_metadata)
    if not names:
        return plan
    call = {"call": DROP_STEP, "domain": domain, "snapshots": list(names), "flags": [METADATA_ONLY]}
    step = Step(DROP_STEP, call=call)
    return replace(plan, steps=(*plan.steps, step), notes=(guard_note(names), *plan.notes))


def drop_metadata_step(plan: CommitPlan) -> Step | None:
    """The plan's METADATA_ONLY deletion step, when --drop-snapshot-metadata added one."""
    return next((s for s in plan.steps if s.kind == DROP_STEP and s.call), None)


def without_drop_step(plan: CommitPlan) -> CommitPlan:
    """The plan without its metadata step, for runners that run every step they are given."""
    return replace(plan, steps=tuple(s for s in plan.steps if s.kind != DROP_STEP))


def drop_metadata(uri: str, domain: str, names: Sequence[str]) -> None:
    """Remove the snapshots' metadata only (VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)."""
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        ordered = leaves_first(_snapshots_of(dom), names)
        for name in ordered:
            try:
                dom.snapshotLookupByName(name, 0).delete(
                    libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
                )
            except libvirt.libvirtError as err:
                raise libvirt_error(err, f"removing the metadata of snapshot {name}") from err
    finally:
        conn.close()


def drop_after(plan: CommitPlan, uri: str, domain: str, sink: ProgressSink | None = None) -> None:
    """After a successful commit, remove the metadata its plan lists (nothing when none)."""
    step = drop_metadata_step(plan)
    if step is None or step.call is None:
        return
    names = [str(n) for n in step.call.get("snapshots", [])]
    if sink is not None:
        sink.logged(f"# {DROP_STEP}({', '.join(names)}, flags={METADATA_ONLY})")
    try:
        drop_metadata(uri, domain, names)
    except BackchainError as err:
        raise EngineError(
            f"the commit succeeded, but removing snapshot metadata failed: {err}",
            state=f"remove it yourself: virsh snapshot-delete {domain} SNAPSHOT --metadata",
        ) from err
