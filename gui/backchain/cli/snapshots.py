"""The command line's libvirt snapshots: snapshot-delete, plan --delete-snapshot, and the guard."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from backchain.cli.output import EXIT_OK, ask, nothing_changed
from backchain.cli.progress import run_cancellable
from backchain.core.errors import PlanError
from backchain.core.model import CommitPlan, OnReady, Step
from backchain.engines.libvirt.snapshot_delete import SnapshotDeletePlan
from backchain.engines.libvirt.snapshot_xml import Snapshot, roles_of, snapshot_label
from backchain.engines.progress import CancelToken, ProgressSink


def dispatch(args: argparse.Namespace) -> int | None:
    """Handle ``plan``/``commit --delete-snapshot``; None for anything else."""
    if args.command not in ("plan", "commit") or not getattr(args, "delete_snapshot", None):
        return None
    args.snapshot = args.delete_snapshot
    return plan_snapshot_delete(args) if args.command == "plan" else cmd_snapshot_delete(args)


def _plan(args: argparse.Namespace) -> SnapshotDeletePlan:
    from backchain.engines.libvirt.snapshots import plan_snapshot_delete as make

    if not args.connect or not args.domain:
        raise PlanError("deleting a snapshot needs --connect URI and --domain NAME")
    return make(args.connect, args.domain, args.snapshot)


def _print(plan: SnapshotDeletePlan, as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan.to_json(), indent=2))
        return
    for line in plan.lines():
        print(line)
    print("\nCommands:")
    print("  " + plan.step.as_shell())


def plan_snapshot_delete(args: argparse.Namespace) -> int:
    """``plan --connect URI --domain NAME --delete-snapshot SNAPSHOT [--json]``."""
    _print(_plan(args), args.json)
    return EXIT_OK


class SnapshotLines:
    """A ProgressSink that prints each disk's progress as lines (``hda: commit 40%``)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.outcome: tuple[bool, str] | None = None
        self._last: dict[str, str] = {}

    def _say(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def started(self, plan: CommitPlan) -> None:
        """Nothing to say before the first disk reports."""

    def step_started(self, step: Step) -> None:
        """Name the call."""
        self._say(f"{step.kind} ...")

    def advanced(self, done: int, total: int, phase: str) -> None:
        """One line per disk and tenth; ``phase`` is ``"hda commit"``, ``"hda ready"``, ..."""
        disk, _, what = phase.partition(" ")
        tenth = min(10, done * 10 // total) if total > 0 else 0
        text = f"{disk}: {what} {tenth * 10}%" if what == "commit" else f"{disk}: {what}"
        if self._last.get(disk) != text:
            self._last[disk] = text
            self._say(text)

    def logged(self, text: str) -> None:
        """Events are shown through advanced()."""

    def ready(self) -> OnReady:
        """libvirt pivots by itself during a snapshot deletion."""
        return OnReady.PIVOT

    def finished(self, ok: bool, message: str) -> None:
        """Keep the outcome."""
        self.outcome = (ok, message)


def cmd_snapshot_delete(args: argparse.Namespace) -> int:
    """``backchain snapshot-delete --connect URI --domain NAME SNAPSHOT [--yes] [--json]``.

    The deletion runs through the runner like every job: locks, preflight, journal, the one
    virDomainSnapshotDelete step (engines/libvirt/engine.py's LibvirtSession), outcome.
    """
    plan = _plan(args)
    if not args.yes:
        _print(plan, False)
        if not ask(f"\nDelete snapshot {plan.snapshot}?"):
            return nothing_changed()
    sink = SnapshotLines(None if args.json else sys.stderr)
    run_snapshot_delete(plan, sink)
    message = sink.outcome[1] if sink.outcome else ""
    if args.json:
        print(json.dumps({"ok": True, "plan": plan.to_json(), "message": message}, indent=2))
    else:
        print(message)
    return EXIT_OK


def run_snapshot_delete(
    plan: SnapshotDeletePlan, sink: ProgressSink, cancel: CancelToken | None = None
) -> None:
    """Run a snapshot deletion's plan through the runner (Ctrl-C cancels before the call)."""
    from backchain.engines.runner import run_plan

    cancel = cancel or CancelToken()
    job, target = plan.job(), plan.target
    run_cancellable(lambda: run_plan(job, sink, cancel, target), cancel,
                    "backchain-snapshot-delete")  # fmt: skip


# -- chain --connect: the snapshots on each layer ----------------------------------------------


def domain_snapshots(uri: str, domain: str) -> tuple[Snapshot, ...]:
    """The domain's snapshots, for ``chain --connect``."""
    from backchain.engines.libvirt.snapshots import read_snapshots

    return read_snapshots(uri, domain)


def libvirt_snapshots_json(snapshots: Sequence[Snapshot], path: str) -> list[dict[str, str]]:
    """``[{"name", "role", "created"}]`` for one layer; ``created`` is ISO 8601 in UTC."""
    return [
        {
            "name": snap.name,
            "role": str(role),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snap.created)),
        }
        for snap, role in roles_of(snapshots, path)
    ]


def snapshot_text(snapshots: Sequence[Snapshot], path: str) -> str:
    """``  [s1 · 2026-12-01 19:33 (created)]`` after a layer in ``chain``'s text, or nothing."""
    found = roles_of(snapshots, path)
    if not found:
        return ""
    return "  [" + "; ".join(f"{snapshot_label(s)} ({role})" for s, role in found) + "]"
