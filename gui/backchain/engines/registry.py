"""The engine for each kind, imported only when a job needs it (qemu.qmp and libvirt are slow)."""

from __future__ import annotations

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind
from backchain.engines.base import Engine, ImageTarget, Target


def engine_for(kind: EngineKind) -> Engine:
    """The engine that plans and runs jobs of ``kind``."""
    if kind is EngineKind.QMP:
        from backchain.engines.qmp.engine import QmpEngine

        return QmpEngine()
    if kind is EngineKind.LIBVIRT:
        from backchain.engines.libvirt.engine import LibvirtEngine

        return LibvirtEngine()
    from backchain.engines.qemu_img.engine import QemuImgEngine

    return QemuImgEngine()


def make_plan(
    graph: ImageGraph, request: CommitRequest, target: Target | None = None
) -> CommitPlan:
    """The plan of ``request`` on a graph already read, with the steps of its engine.

    No I/O: the window re-plans on every click. A libvirt request is planned as for a running
    domain (a shut-off one goes through the libvirt engine's plan_for_graph). The engine is
    chosen by ``request.engine``; the operation by ``request.operation``: core.plan resolves a
    commit or a pull, and each engine builds that operation's steps (commit_steps/pull_steps).
    """
    if request.engine is EngineKind.LIBVIRT:
        from backchain.engines.libvirt.engine import plan_running

        return plan_running(graph, request)
    if request.engine is EngineKind.QMP:
        from backchain.engines.base import QmpTarget

        return engine_for(EngineKind.QMP).prepare(graph, target or QmpTarget(""), request)
    return engine_for(EngineKind.QEMU_IMG).prepare(
        graph, target or ImageTarget(request.image), request
    )
