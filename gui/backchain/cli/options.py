"""Command-line options -> the typed request (and the ready choice), the same for every engine."""

from __future__ import annotations

import argparse
import os

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitRequest, EngineKind, OnReady, Operation


def resolve_arg(value: str | None) -> str | None:
    """A path becomes absolute and symlink-free; anything else (a node name) stays as is."""
    if value is None:
        return None
    if os.path.lexists(value):
        return os.path.realpath(value)
    return value


def on_ready_from(args: argparse.Namespace) -> OnReady:
    """``--pivot`` or ``--keep-overlay``, as virsh blockcommit has them; ASK when neither."""
    if getattr(args, "pivot", False):
        return OnReady.PIVOT
    if getattr(args, "keep_overlay", False):
        return OnReady.KEEP_OVERLAY
    return OnReady.ASK


def ready_choice(args: argparse.Namespace) -> tuple[OnReady, bool]:
    """The ready choice and ACTIVE: as in virsh, --pivot and --keep-overlay imply ACTIVE."""
    on_ready = on_ready_from(args)
    return on_ready, bool(getattr(args, "active", False)) or on_ready is not OnReady.ASK


def layer_arg(graph: ImageGraph | None, image: str, value: str | None) -> str | None:
    """--top/--base: a path (from the current directory), a node name, or a backing name as
    the chain records it. A value that is both, for two different layers, is refused."""
    resolved = resolve_arg(value)
    if graph is None or value is None or image not in graph:
        return resolved
    chain = graph.chain(image)
    named = [layer.path for layer in graph.matches_in(chain, value)]
    as_path = resolved if resolved in {layer.path for layer in chain} else None
    if as_path is not None and named and named != [as_path]:
        other = next(p for p in named if p != as_path)
        raise PlanError(f"'{value}' names two different layers of the chain, '{as_path}' "
                        f"(from the current directory) and '{other}' (a backing name in the "
                        "chain); give the full path of the one you mean")  # fmt: skip
    return as_path or (value if named else resolved)


def request_from(
    args: argparse.Namespace,
    image: str,
    engine: EngineKind = EngineKind.QEMU_IMG,
    graph: ImageGraph | None = None,
) -> CommitRequest:
    """The CommitRequest the plan/commit options describe (``graph``: to match backing names)."""
    return CommitRequest(
        image=image,
        top=layer_arg(graph, image, args.top),
        base=layer_arg(graph, image, args.base),
        shallow=args.shallow,
        delete=args.delete,
        keep_relative=args.keep_relative,
        rate=getattr(args, "rate", 0) or 0,
        verify=not args.no_verify,
        on_ready=on_ready_from(args),
        engine=engine,
        operation=operation_from(args),
    )


def operation_from(args: argparse.Namespace) -> Operation:
    """``backchain pull`` and ``plan --pull`` pull; everything else commits."""
    if getattr(args, "command", None) == "pull" or getattr(args, "pull", False):
        return Operation.PULL
    return Operation.COMMIT
