"""The command line's online options: --qmp SOCKET, --device, --active, --pivot/--keep-overlay."""

from __future__ import annotations

import argparse
from dataclasses import replace

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--qmp SOCKET`` in place of IMAGE, and ``--device`` to pick one of several chains."""
    parser.add_argument(
        "--qmp",
        metavar="SOCKET",
        help="read the live chain of a running QEMU (unix socket or host:port)",
    )
    parser.add_argument(
        "--device", metavar="NODE", help="with --qmp: the device or root node whose chain to use"
    )


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """``--active`` and ``--pivot | --keep-overlay``, as virsh blockcommit has them."""
    parser.add_argument(
        "--active",
        action="store_true",
        help="with --qmp: top is the active layer (an active commit)",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--pivot",
        action="store_true",
        help="active commit: switch the VM to base once it has caught up",
    )
    choice.add_argument(
        "--keep-overlay",
        action="store_true",
        help="active commit: keep top active; base keeps a consistent copy",
    )


def load_graph(args: argparse.Namespace) -> ImageGraph:
    """Read the live graph; ``args.image`` becomes the chosen chain's active layer."""
    from backchain.engines.qmp.graph import read_qmp_graph, root_for

    if args.image:
        raise PlanError("give either IMAGE or --qmp SOCKET, not both")
    graph = read_qmp_graph(args.qmp)
    args.image = root_for(graph, args.device).path
    return graph


def ready_choice(args: argparse.Namespace) -> tuple[OnReady, bool]:
    """The ready choice and ACTIVE: as in virsh, --pivot and --keep-overlay imply ACTIVE."""
    on_ready = OnReady.ASK
    if getattr(args, "pivot", False):
        on_ready = OnReady.PIVOT
    elif getattr(args, "keep_overlay", False):
        on_ready = OnReady.KEEP_OVERLAY
    active = bool(getattr(args, "active", False)) or on_ready is not OnReady.ASK
    return on_ready, active


def online_request(args: argparse.Namespace, request: CommitRequest) -> CommitRequest:
    """The offline request turned into an online one (node names, ACTIVE, the ready choice)."""
    on_ready, active = ready_choice(args)
    return replace(request, engine=EngineKind.QMP, active=active, on_ready=on_ready)


def check_runnable(plan: CommitPlan) -> None:
    """An active commit must know what to do once ready, as ``virsh blockcommit`` does."""
    if plan.active_commit and plan.request.on_ready is OnReady.ASK:
        raise PlanError("an active commit needs --pivot or --keep-overlay")
