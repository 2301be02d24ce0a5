"""libvirt snapshots on a domain: read them, preview virDomainSnapshotDelete, and run its calls.

The calls run as steps of a plan (LibvirtSession.run_step), so the runner's locks, preflight and
journal apply to them: a snapshot deletion's one virDomainSnapshotDelete, and the METADATA_ONLY
step that ends a commit made with ``--drop-snapshot-metadata``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from backchain.core import plan as planner
from backchain.core.errors import BackchainError, CancelledError, EngineError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady, Step, StepKind
from backchain.core.valueclass import replace
from backchain.engines.libvirt import snapshot_delete as deletion
from backchain.engines.libvirt.jobs import ensure_event_loop
from backchain.engines.libvirt.read import (
    domain_graph,
    domain_state,
    is_local,
    libvirt_error,
    lookup_domain,
    open_connection,
    parse_disks,
    require_libvirt,
)
from backchain.engines.libvirt.snapshot_delete import DiskMerge, SnapshotDeletePlan
from backchain.engines.libvirt.snapshot_xml import (
    METADATA_ONLY,
    Snapshot,
    leaves_first,
    normalised,
    parse_snapshot,
)
from backchain.engines.libvirt.steps import RULES
from backchain.engines.progress import CancelToken, ProgressSink

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
        chains = {d.target: tuple(os.path.realpath(x.path) for x in d.chain) for d in disks}
        job = False
        if running:
            for disk in disks:
                try:
                    job = job or bool(dom.blockJobInfo(disk.target, 0))
                except libvirt.libvirtError as err:
                    raise libvirt_error(err, f"reading block jobs of {disk.target}") from err
        return running, chains, job, tuple(normalised(s) for s in _snapshots_of(dom))
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
        return replace(planner.plan(graph, request, RULES), advice=()), None
    except PlanError as err:
        # libvirt 9.0 deletes the overlay whatever still depends on it: show the commit
        # without our DELETE refusal, and say what is left dangling.
        kept = planner.plan(graph, replace(request, delete=False), RULES)
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
    merges: list[DiskMerge] = []
    notes: list[str] = []
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


def _merges_of(step: Step) -> list[Mapping[str, str]]:
    disks = (step.call or {}).get("disks") or []
    return [d for d in disks if isinstance(d, Mapping)]


def is_snapshot_delete_plan(plan: CommitPlan) -> bool:
    """A snapshot deletion's plan: one virDomainSnapshotDelete (no METADATA_ONLY flag)."""
    return bool(plan.steps) and plan.steps[0].kind is StepKind.LIBVIRT_SNAPSHOT_DELETE


def check_still_planned(plan: CommitPlan, uri: str, domain: str, *, resuming: bool) -> None:
    """Before the call: libvirt would still delete the snapshot as the plan says.

    When resuming, a snapshot that is gone already is fine: the deletion ran to its end.
    """
    step = plan.steps[0]
    name = str((step.call or {}).get("snapshot"))
    if resuming and name not in {s.name for s in read_snapshots(uri, domain)}:
        return
    fresh = plan_snapshot_delete(uri, domain, name)
    planned = [(str(d["disk"]), str(d["top"]), str(d["base"])) for d in _merges_of(step)]
    if [(m.disk, m.top, m.base) for m in fresh.merges] != planned:
        raise PlanError(
            f"the disks of snapshot {name} changed since the plan was made; "
            "make the plan again and review it"
        )


def run_snapshot_delete(
    uri: str, domain: str, step: Step, sink: ProgressSink, cancel: CancelToken
) -> str:
    """virDomainSnapshotDelete(step's snapshot, 0), following each disk's block job; the outcome.

    libvirt cannot cancel a deletion once it runs: a cancel before the call stops it, after it
    the deletion is waited for.
    """
    libvirt = require_libvirt()
    call = dict(step.call or {})
    name = str(call["snapshot"])
    merges = _merges_of(step)
    ensure_event_loop()
    conn = open_connection(uri)
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
        dom = lookup_domain(conn, domain)
        try:
            snapshot = dom.snapshotLookupByName(name, 0)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                sink.logged(f"snapshot {name} is gone already: the deletion ran to its end")
                return _outcome(domain, name, merges)
            raise
        callback = conn.domainEventRegisterAny(
            dom,
            libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
            lambda _c, _d, disk, _t, status, _o: events.put((disk, names.get(status, str(status)))),
            None,
        )
        if cancel.cancelled:
            raise CancelledError("cancelled before the snapshot deletion started")

        def work() -> None:  # runs in the delete thread; the call blocks until libvirt is done
            try:
                snapshot.delete(0)
            except BaseException as err:  # reported below, on the calling thread
                failure.append(err)

        worker = threading.Thread(target=work, name="backchain-snapshot-delete")
        worker.start()
        _follow_jobs(dom, [str(m.get("disk")) for m in merges], sink, events, worker, failure)
        if failure:
            raise failure[0]
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"virDomainSnapshotDelete {name}") from err
    finally:
        if callback is not None:
            try:
                conn.domainEventDeregisterAny(callback)
            except libvirt.libvirtError:
                pass  # the connection may already be gone
        conn.close()
    return _outcome(domain, name, merges)


def _follow_jobs(
    dom: Any,
    disks: Sequence[str],
    sink: ProgressSink,
    events: queue.Queue[tuple[str, str]],
    worker: threading.Thread,
    failure: list[BaseException],
) -> None:
    """Report each disk's job from block-job events and virDomainGetBlockJobInfo until done."""
    last: dict[str, tuple[int, int]] = {}
    pending = set(disks)
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
            _poll_jobs(dom, disks, sink, last)
    worker.join()
    if not failure:
        # virDomainSnapshotDelete returns only once every disk's job has ended: a disk whose
        # final event did not reach us (a lost event) is done all the same.
        for disk in sorted(pending):
            done = last.get(disk, (1, 1))[1]
            sink.logged(f"{disk}: libvirt finished the deletion (no final block-job event)")
            sink.advanced(done, done, f"{disk} done")


def _poll_jobs(
    dom: Any, disks: Sequence[str], sink: ProgressSink, last: dict[str, tuple[int, int]]
) -> None:
    """virDomainGetBlockJobInfo for each disk; report a disk whose figures moved."""
    libvirt = require_libvirt()
    for disk in disks:
        try:
            info = dom.blockJobInfo(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES)
        except libvirt.libvirtError:
            continue  # the domain may have gone (a shut-off domain's QEMU stopping)
        if info and (int(info["cur"]), int(info["end"])) != last.get(disk):
            last[disk] = (int(info["cur"]), int(info["end"]))
            sink.advanced(*last[disk], f"{disk} commit")


def _outcome(domain: str, snapshot: str, merges: Sequence[Mapping[str, str]]) -> str:
    name = os.path.basename
    parts = [f"Deleted snapshot {snapshot} of '{domain}'."]
    for merge in merges:
        top, base = str(merge.get("top")), str(merge.get("base"))
        parts.append(f"{merge.get('disk')}: merged {name(top)} into {name(base)} and "
                     f"deleted {name(top)}.")  # fmt: skip
    return " ".join(parts)


def drop_metadata(uri: str, domain: str, step: Step, sink: ProgressSink) -> str:
    """The METADATA_ONLY step: remove the snapshots' metadata, leaves first; what it did.

    A snapshot already gone is skipped, so that a resumed job can run the step again.
    """
    libvirt = require_libvirt()
    names = [str(n) for n in (step.call or {}).get("snapshots", [])]
    sink.logged(f"# virDomainSnapshotDelete({', '.join(names)}, flags={METADATA_ONLY})")
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        existing = {s.name for s in _snapshots_of(dom)}
        for name in leaves_first(_snapshots_of(dom), [n for n in names if n in existing]):
            try:
                dom.snapshotLookupByName(name, 0).delete(
                    libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
                )
            except libvirt.libvirtError as err:
                raise libvirt_error(err, f"removing the metadata of snapshot {name}") from err
    except BackchainError as err:
        raise EngineError(
            f"the commit succeeded, but removing snapshot metadata failed: {err}",
            state=f"Remove it yourself: virsh snapshot-delete {domain} SNAPSHOT --metadata "
            f"(for {', '.join(names)}), or resume the job.",
        ) from err
    finally:
        conn.close()
    plural = "s" if len(names) > 1 else ""
    return f"Removed the metadata of libvirt snapshot{plural} {', '.join(names)}."
