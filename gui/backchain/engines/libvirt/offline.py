"""A domain's files committed or pulled offline with qemu-img (IMAGE with --connect/--domain).

The user names the image, and the domain whose snapshots and state the job must respect: the
plan is qemu-img's, wrapped so that the domain is checked to be shut off just before the first
write, and guarded like any libvirt plan (a file a snapshot's XML names is not broken silently).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, Operation, Step, StepKind
from backchain.core.valueclass import replace, valueclass
from backchain.engines.base import ImageTarget, LibvirtTarget
from backchain.engines.libvirt.read import (
    domain_state,
    is_local,
    lookup_domain,
    open_connection,
    parse_disks,
)
from backchain.engines.libvirt.snapshot_xml import Snapshot, guarded
from backchain.engines.libvirt.snapshots import read_snapshots
from backchain.engines.libvirt.steps import shut_off_plan
from backchain.engines.qemu_img.engine import QemuImgEngine, written_images


@valueclass(frozen=True)
class DomainFiles:
    """What an offline job needs to know of the domain it names."""

    running: bool
    sources: dict[str, str]
    """Each disk's source (its active layer), resolved: disk target -> path."""
    chains: dict[str, tuple[str, ...]]
    """Each disk's chain in the domain XML, resolved (a shut-off domain's holds the source)."""
    snapshots: tuple[Snapshot, ...]


def read_domain_files(uri: str, domain: str) -> DomainFiles:
    """The domain's state, its disks' files and its snapshots (one connection, then one more)."""
    if not is_local(uri):
        raise PlanError(
            f"'{uri}' is a remote host; an offline qemu-img job works on this machine's files "
            "only, so name a local domain (or commit online with --disk)"
        )
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        running, _off = domain_state(dom)
        disks = parse_disks(dom.XMLDesc(0))
    finally:
        conn.close()
    chains = {d.target: tuple(os.path.realpath(x.path) for x in d.chain) for d in disks}
    sources = {target: chain[0] for target, chain in chains.items() if chain}
    return DomainFiles(running, sources, chains, read_snapshots(uri, domain))


def _domain_paths(files: DomainFiles, graph: ImageGraph) -> dict[str, str]:
    """Every file the domain's disks read, path -> disk: the XML's chains and, for a source the
    graph holds, its chain in the image headers."""
    found: dict[str, str] = {}
    for disk, chain in files.chains.items():
        paths = list(chain)
        source = files.sources.get(disk)
        if source is not None and source in graph:
            paths += [layer.path for layer in graph.chain(source)]
        found.update({path: disk for path in paths})
    return found


def _refuse_running(touching: Sequence[str], files: DomainFiles, graph: ImageGraph,
                    domain: str) -> None:  # fmt: skip
    """Backchain never writes a running domain's files with qemu-img (QEMU holds them open)."""
    if not files.running:
        return
    used = _domain_paths(files, graph)
    touched = [p for p in dict.fromkeys(touching) if p in used]
    if touched:
        names = ", ".join(f"{os.path.basename(p)} (disk {used[p]})" for p in touched)
        disk = used[touched[0]]
        raise PlanError(
            f"domain '{domain}' is running and uses {names}: qemu-img must not write files a "
            f"running QEMU has open. Commit online (--disk {disk} instead of IMAGE), or shut "
            "the domain down first"
        )
    raise PlanError(
        f"domain '{domain}' is running: an offline job that names it runs only while it is shut "
        "off. Leave out --connect/--domain for files the domain does not use, or shut it down"
    )


def _wrap(
    offline: CommitPlan, graph: ImageGraph, files: DomainFiles, domain: str, repoint: bool
) -> tuple[CommitPlan, str]:
    """The shut-off domain's wrapping: state check first; the disk whose source is the image
    gets the same re-point and DELETE rules as ``--disk``."""
    disk = next((d for d, src in files.sources.items() if src == offline.image), "")
    deleted_sources = [d for d, src in files.sources.items() if src in offline.deleted]
    if deleted_sources and not (repoint and disk and deleted_sources == [disk]):
        raise PlanError(
            f"cannot delete '{files.sources[deleted_sources[0]]}': it is disk "
            f"{deleted_sources[0]}'s source in domain '{domain}'"
            + ("; add --repoint to switch the disk to base first" if disk else "")
        )
    if disk:
        base = offline.base if offline.operation is Operation.COMMIT else offline.image
        return shut_off_plan(offline, domain, disk, repoint, graph.layer(base).format), disk
    if repoint:
        raise PlanError(
            f"--repoint: {os.path.basename(offline.image)} is no disk's source in '{domain}'"
        )
    check = Step(
        StepKind.LIBVIRT_STATE,
        call={"call": "virDomainGetState", "domain": domain, "expect": "shut off"},
    )
    note = f"domain '{domain}' must stay shut off: its files are changed offline with qemu-img"
    wrapped = replace(offline, engine=EngineKind.LIBVIRT, steps=(check, *offline.steps),
                      notes=(*offline.notes, note))  # fmt: skip
    return wrapped, ""


def plan_domain_files(
    graph: ImageGraph,
    request: CommitRequest,
    image: ImageTarget,
    uri: str,
    domain: str,
    *,
    repoint: bool = False,
    drop_snapshot_metadata: bool = False,
    files: DomainFiles | None = None,
) -> tuple[CommitPlan, LibvirtTarget]:
    """qemu-img's plan on ``graph``, refused while the domain runs, guarded by its snapshots.

    The target names the disk whose source is the image ("" when it is no disk's source), so
    that the runner's libvirt engine checks the state and runs the metadata step.
    """
    files = files or read_domain_files(uri, domain)
    try:
        offline = QemuImgEngine().prepare(
            graph, image, replace(request, engine=EngineKind.QEMU_IMG)
        )
    except PlanError:
        # qemu-img's refusal (QEMU's lock on a layer) says less than the domain's state does.
        chain = (
            [layer.path for layer in graph.chain(request.image)] if request.image in graph else []
        )
        _refuse_running(chain, files, graph, domain)
        raise
    _refuse_running([*written_images(offline), *offline.deleted], files, graph, domain)
    plan, disk = _wrap(offline, graph, files, domain, repoint)
    plan = guarded(plan, files.snapshots, uri, domain, drop_snapshot_metadata)
    target = LibvirtTarget(uri, domain, disk, image.scan, image.default_scan)
    return plan, target
