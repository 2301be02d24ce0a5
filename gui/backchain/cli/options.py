"""Command-line options -> the typed request (and the ready choice), the same for every engine."""

from __future__ import annotations

import argparse
import os

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


def request_from(
    args: argparse.Namespace, image: str, engine: EngineKind = EngineKind.QEMU_IMG
) -> CommitRequest:
    """The CommitRequest the plan/commit options describe."""
    return CommitRequest(
        image=image,
        top=resolve_arg(args.top),
        base=resolve_arg(args.base),
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


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """The options every engine's plan and commit share."""
    parser.add_argument("--top", metavar="T", help="the highest layer to commit, or the layer "
                        "a pull copies into (default: active)")  # fmt: skip
    parser.add_argument("--base", metavar="B", help="the layer that receives a commit's data, or "
                        "that stays below top after a pull (default: none)")  # fmt: skip
    parser.add_argument("--shallow", action="store_true", help="commit into top's backing file")
    parser.add_argument(
        "--delete",
        action="store_true",
        help="delete the merged layers (a pull's: the unused removed ones) after",
    )
    parser.add_argument("--keep-relative", action="store_true", help="keep backing names relative")
    parser.add_argument("--no-verify", action="store_true",
                        help="with --delete: skip comparing top's view with base")  # fmt: skip
