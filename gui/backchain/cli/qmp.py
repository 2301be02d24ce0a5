"""The command line's online options: --qmp SOCKET, --device, --active, --pivot/--keep-overlay."""

from __future__ import annotations

import argparse

from backchain.cli.options import ready_choice
from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady, Operation
from backchain.core.valueclass import replace
from backchain.engines.base import QmpTarget


def load_graph(args: argparse.Namespace) -> ImageGraph:
    """Read the live graph; ``args.image`` becomes the chosen chain's active layer."""
    from backchain.engines.qmp.engine import QmpEngine
    from backchain.engines.qmp.graph import root_for

    if args.image:
        raise PlanError("give either IMAGE or --qmp SOCKET, not both")
    graph = QmpEngine().read_graph(target_of(args))
    args.image = root_for(graph, args.device).path
    return graph


def target_of(args: argparse.Namespace) -> QmpTarget:
    """The running QEMU the arguments name, with the directories to scan for siblings."""
    return QmpTarget(args.qmp, scan=tuple(getattr(args, "scan", None) or ()),
                     default_scan=not getattr(args, "no_default_scan", False))  # fmt: skip


def online_request(args: argparse.Namespace, request: CommitRequest) -> CommitRequest:
    """The offline request turned into an online one (node names, ACTIVE, the ready choice)."""
    on_ready, active = ready_choice(args)
    return replace(request, engine=EngineKind.QMP, active=active, on_ready=on_ready)


def check_runnable(plan: CommitPlan) -> None:
    """An active commit must know what to do once ready, as ``virsh blockcommit`` does."""
    if plan.operation is Operation.PULL:
        return  # a stream job never waits in ready
    if plan.active_commit and plan.request.on_ready is OnReady.ASK:
        raise PlanError("an active commit needs --pivot or --keep-overlay")
