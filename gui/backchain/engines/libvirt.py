"""libvirt domains: plan a disk's commit, run it (online or offline), re-point, collapse a VM."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from backchain.core import libvirt_steps
from backchain.core.errors import BackchainError, EngineError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.libvirt_snapshots import Snapshot
from backchain.core.model import CommitPlan, CommitRequest, OnReady, Step
from backchain.core.plan import plan as make_plan
from backchain.engines.libvirt_jobs import run_running_commit, set_speed
from backchain.engines.libvirt_read import (
    DEFAULT_URI,
    INSTALL_HINT,
    REMOTE_NOTE,
    DiskInfo,
    DomainInfo,
    domain_graph,
    domain_state,
    is_local,
    libvirt_error,
    list_domains,
    lookup_domain,
    open_connection,
    parse_disks,
    read_domain_graph,
    require_libvirt,
)
from backchain.engines.progress import CancelToken, ProgressSink

__all__ = [
    "DEFAULT_URI",
    "INSTALL_HINT",
    "DiskResult",
    "DomainInfo",
    "LibvirtTarget",
    "active_layer",
    "collapse_domain",
    "list_domains",
    "plan_collapse",
    "plan_commit",
    "plan_for_graph",
    "read_domain_graph",
    "repoint_disk",
    "run_collapse",
    "run_libvirt_plan",
    "set_speed",
    "summary",
]

_QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


@dataclass(frozen=True)
class LibvirtTarget:
    """Which disk a libvirt plan is for: the connection URI, the domain and the disk target."""

    uri: str
    domain: str
    disk: str


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
    # libvirt snapshots (issue 14): the guard; see engines/libvirt_snapshots.py.
    from backchain.engines.libvirt_snapshots import read_snapshots

    snapshots = read_snapshots(target.uri, target.domain)
    drop = drop_snapshot_metadata
    return plan_for_graph(target, graph, info, running, request, repoint=repoint,
                          snapshots=snapshots, drop_snapshot_metadata=drop)  # fmt: skip


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
    refused unless ``drop_snapshot_metadata``.
    """
    if snapshots is not None:  # libvirt snapshots (issue 14): the guard, on data already read
        from backchain.engines.libvirt_snapshots import guarded

        plan = plan_for_graph(target, graph, info, running, request, repoint=repoint)
        return guarded(plan, snapshots, target.uri, target.domain, drop_snapshot_metadata)
    local = is_local(target.uri)
    active_path = active_layer(graph)
    notes: list[str] = []
    if running:
        top = graph.find(request.top) if request.top is not None else None
        auto_active = not request.active and (request.top is None or (
            top is not None and top.path == active_path))  # fmt: skip
        request = replace(request, image=active_path, engine="libvirt",
                          active=request.active or auto_active)  # fmt: skip
        plan = make_plan(graph, request)
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
    request = replace(request, image=active_path, engine="qemu-img", active=False)
    offline = make_plan(graph, request)
    if offline.deleted and offline.active_commit and not repoint:
        raise PlanError(
            f"cannot delete '{offline.top}': it is disk {info.target}'s source in domain "
            f"'{target.domain}'; add --repoint to switch the disk to base first"
        )
    base_format = graph.layer(offline.base).format
    return libvirt_steps.shut_off_plan(offline, target.domain, info.target, repoint, base_format)


def run_libvirt_plan(
    plan: CommitPlan, sink: ProgressSink, cancel: CancelToken, connection: object | None
) -> None:
    """Run a libvirt plan on the disk ``connection`` (a LibvirtTarget) names."""
    if not isinstance(connection, LibvirtTarget):
        raise EngineError("a libvirt plan needs its connection: LibvirtTarget(uri, domain, disk)")
    offline = bool(plan.steps) and plan.steps[0].kind == "virDomainGetState"
    _check_state(connection, want_running=not offline)
    if not offline:
        run_running_commit(plan, sink, cancel, connection.uri, connection.domain)
    else:
        _run_shut_off(plan, sink, cancel, connection)
    # libvirt snapshots (issue 14): remove the metadata that --drop-snapshot-metadata listed.
    from backchain.engines.libvirt_snapshots import drop_after

    drop_after(plan, connection.uri, connection.domain, sink)


def _check_state(target: LibvirtTarget, *, want_running: bool) -> None:
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


class _HeldFinish:
    """Passes events through but holds back finished(), so the re-point can come first."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.outcome: tuple[bool, str] | None = None

    def started(self, plan: CommitPlan) -> None:
        self.sink.started(plan)

    def step_started(self, step: Step) -> None:
        self.sink.step_started(step)

    def advanced(self, done: int, total: int, phase: str) -> None:
        self.sink.advanced(done, total, phase)

    def logged(self, text: str) -> None:
        self.sink.logged(text)

    def ready(self) -> OnReady:
        return self.sink.ready()

    def finished(self, ok: bool, message: str) -> None:
        self.outcome = (ok, message)


def _run_shut_off(
    plan: CommitPlan, sink: ProgressSink, cancel: CancelToken, target: LibvirtTarget
) -> None:
    from backchain.engines.runner import run_offline

    held = _HeldFinish(sink)
    try:
        run_offline(libvirt_steps.offline_part(plan), held, cancel)
    except EngineError:
        if held.outcome is not None:
            sink.finished(*held.outcome)
        raise
    message = held.outcome[1] if held.outcome else ""
    define = next((s for s in plan.steps if s.kind == "virDomainDefineXML"), None)
    if define is not None and define.call is not None:
        sink.step_started(define)
        sink.logged(f"# virDomainDefineXML: disk {target.disk} source -> {define.call['source']}")
        try:
            repoint_disk(target.uri, target.domain, target.disk,
                         str(define.call["source"]), str(define.call["format"]))  # fmt: skip
        except EngineError as err:
            err.state = (
                f"{message}\nThe domain still uses {os.path.basename(plan.top)}; "
                f"re-point disk {target.disk} yourself (virsh edit {target.domain})."
            )
            sink.finished(False, f"{err.message}\n{err.state}")
            raise
        message += f" Disk {target.disk} of '{target.domain}' now uses {define.call['source']}."
    sink.finished(True, message)


def repoint_disk(uri: str, domain: str, disk: str, source: str, fmt: str) -> None:
    """Set a defined domain's disk source to ``source`` with virDomainDefineXML (no pivot needed).

    Only the persistent definition changes; the old ``<backingStore>`` is dropped so that libvirt
    reads the new chain from the image itself at the next start.
    """
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        xml = dom.XMLDesc(flags)
        conn.defineXML(repointed_xml(xml, disk, source, fmt))
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"re-pointing disk {disk} of {domain}") from err
    finally:
        conn.close()


def repointed_xml(xml: str, disk: str, source: str, fmt: str) -> str:
    """The domain XML with ``disk``'s source file and format replaced."""
    ET.register_namespace("qemu", _QEMU_NS)
    root = ET.fromstring(xml)
    for element in root.findall("./devices/disk"):
        target = element.find("target")
        if target is None or target.get("dev") != disk:
            continue
        src = element.find("source")
        driver = element.find("driver")
        if src is None or src.get("file") is None:
            break
        src.set("file", source)
        if driver is not None:
            driver.set("type", fmt)
        for store in element.findall("backingStore"):
            element.remove(store)
        return ET.tostring(root, encoding="unicode")
    raise EngineError(f"domain XML has no file-backed disk '{disk}' to re-point")


@dataclass(frozen=True)
class DiskResult:
    """How one disk's commit ended, for the collapse summary."""

    disk: str
    ok: bool
    message: str
    plan: CommitPlan | None


def plan_collapse(
    uri: str,
    domain: str,
    *,
    disks: Sequence[str] | None = None,
    on_ready: OnReady = OnReady.PIVOT,
    repoint: bool = True,
    rate: int = 0,
) -> list[tuple[str, CommitPlan | BackchainError]]:
    """Each disk's plan for committing its whole chain into its bottom image (or why not).

    The plans are made before anything runs, so that they can be shown and then run unchanged.
    """
    conn = open_connection(uri)
    try:
        names = [d.target for d in parse_disks(lookup_domain(conn, domain).XMLDesc(0))]
    finally:
        conn.close()
    plans: list[tuple[str, CommitPlan | BackchainError]] = []
    for disk in disks if disks is not None else names:
        request = CommitRequest(image="", on_ready=on_ready, rate=rate, engine="libvirt")
        try:
            plans.append((disk, plan_commit(LibvirtTarget(uri, domain, disk), request,
                                            repoint=repoint)))  # fmt: skip
        except BackchainError as err:
            plans.append((disk, err))
    return plans


def run_collapse(
    uri: str,
    domain: str,
    plans: Sequence[tuple[str, CommitPlan | BackchainError]],
    sink_for: Callable[[str], ProgressSink],
    cancel: CancelToken,
) -> list[DiskResult]:
    """Run plan_collapse's plans one disk after another, each disk reporting to its own sink.

    A failure on one disk does not stop the others; a disk that could not be planned is reported.
    """
    results: list[DiskResult] = []
    for disk, plan in plans:
        if isinstance(plan, BackchainError):
            results.append(DiskResult(disk, False, plan.summary, None))
            continue
        sink = sink_for(disk)
        try:
            if cancel.cancelled:
                raise EngineError("cancelled before this disk started")
            run_libvirt_plan(plan, sink, cancel, LibvirtTarget(uri, domain, disk))
        except BackchainError as err:
            results.append(DiskResult(disk, False, err.summary, plan))
            continue
        results.append(DiskResult(disk, True, _last_message(sink, plan), plan))
    return results


def collapse_domain(
    uri: str,
    domain: str,
    sink_for: Callable[[str], ProgressSink],
    cancel: CancelToken,
    *,
    disks: Sequence[str] | None = None,
    on_ready: OnReady = OnReady.PIVOT,
    repoint: bool = True,
    rate: int = 0,
) -> list[DiskResult]:
    """Commit each disk's whole chain into its bottom image, one disk after another.

    Each disk reports to its own sink; a failure on one disk does not stop the others.
    """
    plans = plan_collapse(uri, domain, disks=disks, on_ready=on_ready, repoint=repoint, rate=rate)
    return run_collapse(uri, domain, plans, sink_for, cancel)


def _last_message(sink: Any, plan: CommitPlan) -> str:
    outcome = getattr(sink, "outcome", None)
    if isinstance(outcome, tuple) and len(outcome) == 2:
        return str(outcome[1])
    return f"committed {os.path.basename(plan.top)} into {os.path.basename(plan.base)}"


def summary(domain: str, results: Sequence[DiskResult]) -> str:
    """One line per disk and a count, for the end of "collapse this VM's chains"."""
    lines = [f"{'ok' if r.ok else 'FAILED'}  {r.disk}: {r.message}" for r in results]
    good = sum(1 for r in results if r.ok)
    lines.append(f"{domain}: {good} of {len(results)} disks collapsed")
    return "\n".join(lines)
