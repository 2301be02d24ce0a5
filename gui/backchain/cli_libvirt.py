"""The command line's libvirt options: --connect URI, --domain, --disk, --repoint, --all-disks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TextIO

from backchain.core.errors import PlanError
from backchain.core.model import CommitPlan, OnReady, Step


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--connect URI`` in place of IMAGE, with ``--domain`` and ``--disk``."""
    parser.add_argument(
        "--connect", metavar="URI", help="a libvirt URI (qemu:///system, qemu+ssh://host/system)"
    )
    parser.add_argument("--domain", metavar="NAME", help="with --connect: the domain")
    parser.add_argument("--disk", metavar="TARGET", help="with --connect: the disk (vda)")


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """``--repoint`` (shut-off domains) and ``--all-disks`` (collapse a VM's chains)."""
    parser.add_argument("--repoint", action="store_true",
                        help="with --connect, domain shut off, top active: point the disk at "
                             "base (virDomainDefineXML)")  # fmt: skip
    parser.add_argument("--all-disks", action="store_true",
                        help="with --connect and --domain: commit every disk's whole chain "
                             "into its bottom image, one disk after another")  # fmt: skip


def dispatch(args: argparse.Namespace) -> int | None:
    """Run chain/plan/commit for --connect; None when --connect was not given."""
    if not getattr(args, "connect", None):
        return None
    if getattr(args, "image", None) or getattr(args, "qmp", None):
        raise PlanError("give either IMAGE, --qmp SOCKET or --connect URI, not several")
    from backchain import cli_snapshots  # libvirt snapshots (issue 14)

    handled = cli_snapshots.dispatch(args)
    if handled is not None:
        return handled
    if args.command == "chain":
        return cmd_chain(args)
    if args.command in ("plan", "commit") and getattr(args, "all_disks", False):
        return cmd_collapse(args, run=args.command == "commit")
    if args.command in ("plan", "commit"):
        return cmd_commit(args, run=args.command == "commit")
    return None


def _layer(layer: Any) -> dict[str, Any]:
    from backchain import cli

    return {"label": layer.extra.get("label"), **cli.layer_json(layer)}


def cmd_chain(args: argparse.Namespace) -> int:
    """``chain --connect URI [--domain NAME [--disk vda]]``: domains, disks, chains."""
    from backchain.engines import libvirt as lv

    if not args.domain:
        domains = lv.list_domains(args.connect)
        if args.json:
            print(json.dumps([{
                "name": d.name, "running": d.running, "persistent": d.persistent,
                "disks": [{"target": k.target, "chain": [x.path for x in k.chain]}
                          for k in d.disks],
            } for d in domains], indent=2))  # fmt: skip
            return 0
        for dom in domains:
            print(f"{dom.name}  {'running' if dom.running else 'shut off'}")
            for disk in dom.disks:
                print(f"  {disk.target}  {disk.chain[0].path}")
        return 0
    disks = [args.disk] if args.disk else _disks_of(args.connect, args.domain)
    from backchain import cli_snapshots  # libvirt snapshots on the layers (issue 14)

    snaps = cli_snapshots.domain_snapshots(args.connect, args.domain)
    document = []
    for disk in disks:
        graph = lv.read_domain_graph(args.connect, args.domain, disk)
        chain = [layer for layer in graph if layer.extra.get("label")]
        others = [layer for layer in graph if not layer.extra.get("label")]
        document.append({"disk": disk, "chain": [
            {**_layer(x), "libvirt_snapshots": cli_snapshots.libvirt_snapshots_json(snaps, x.path)}
            for x in chain], "others": [_layer(x) for x in others]})  # fmt: skip
        if not args.json:
            print(f"{args.domain} {disk}:")
            for depth, layer in enumerate(chain):
                print(f"  {'  ' * depth}{layer.extra['label']}  {layer.path}"
                      f"{cli_snapshots.snapshot_text(snaps, layer.path)}")  # fmt: skip
            for layer in others:
                print(f"  also on this chain: {layer.path} -> {layer.backing_path}")
    if args.json:
        print(json.dumps({"uri": args.connect, "domain": args.domain, "disks": document}, indent=2))
    return 0


def _disks_of(uri: str, domain: str) -> list[str]:
    from backchain.engines import libvirt as lv

    for dom in lv.list_domains(uri):
        if dom.name == domain:
            return [disk.target for disk in dom.disks]
    raise PlanError(f"no domain '{domain}' on {uri}")


def compute_plan(args: argparse.Namespace) -> tuple[CommitPlan, object]:
    """The plan for ``--domain``/``--disk`` and the LibvirtTarget that runs it."""
    from backchain import cli
    from backchain.engines import libvirt as lv

    if not args.domain or not args.disk:
        raise PlanError("plan and commit with --connect need --domain NAME and --disk TARGET")
    on_ready = OnReady.ASK
    if getattr(args, "pivot", False):
        on_ready = OnReady.PIVOT
    elif getattr(args, "keep_overlay", False):
        on_ready = OnReady.KEEP_OVERLAY
    request = cli.request_from(args, "", engine="libvirt")

    request = replace(request, on_ready=on_ready, active=bool(getattr(args, "active", False)))
    target = lv.LibvirtTarget(args.connect, args.domain, args.disk)
    drop = bool(getattr(args, "drop_snapshot_metadata", False))  # issue 14
    return lv.plan_commit(target, request, repoint=args.repoint,
                          drop_snapshot_metadata=drop), target  # fmt: skip


def cmd_commit(args: argparse.Namespace, *, run: bool) -> int:
    """``plan``/``commit --connect URI --domain NAME --disk vda [...]``."""
    from backchain import cli

    plan, target = compute_plan(args)
    if not run:
        cli.print_plan(plan, args.json)
        return 0
    if plan.active_commit and plan.request.on_ready is OnReady.ASK and not _offline(plan):
        raise PlanError("an active commit needs --pivot or --keep-overlay")
    if not args.yes and not cli._confirm(plan):
        print("Nothing was changed.", file=sys.stderr)
        return 2
    return cli.execute(plan, args.json, target)


def _offline(plan: CommitPlan) -> bool:
    return bool(plan.steps) and plan.steps[0].kind == "virDomainGetState"


# -- --all-disks: collapse a VM's chains -------------------------------------------------------

_NOT_WITH_ALL_DISKS = ("disk", "top", "base", "shallow", "delete", "keep_relative", "active")


class DiskLines:
    """A ProgressSink that prints one disk's progress as lines (``vda: commit 40%``)."""

    def __init__(self, disk: str, stream: TextIO | None) -> None:
        self.disk = disk
        self.stream = stream
        self.outcome: tuple[bool, str] | None = None
        self._last: tuple[str, int] | None = None

    def _say(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(f"{self.disk}: {text}\n")
            self.stream.flush()

    def started(self, plan: CommitPlan) -> None:
        """Name what is committed into what."""
        self._say(f"committing {os.path.basename(plan.top)} into {os.path.basename(plan.base)}")

    def step_started(self, step: Step) -> None:
        """Steps show through their progress."""

    def advanced(self, done: int, total: int, phase: str) -> None:
        """A line per phase and per tenth; synchronising has no percentage."""
        tenth = min(10, done * 10 // total) if total > 0 else 0
        if phase == "synchronising":
            tenth = 0
        if self._last == (phase, tenth):
            return
        self._last = (phase, tenth)
        self._say("synchronising (base is catching up with the VM's writes)"
                  if phase == "synchronising" else f"{phase} {tenth * 10}%")  # fmt: skip

    def logged(self, text: str) -> None:
        """Command output stays out of the per-disk lines."""

    def ready(self) -> OnReady:
        """The plan holds the --pivot/--keep-overlay choice."""
        return OnReady.ASK

    def finished(self, ok: bool, message: str) -> None:
        """Keep the outcome for the summary."""
        self.outcome = (ok, message)
        first = message.splitlines()[0] if message else ""
        self._say(("done: " if ok else "FAILED: ") + first)


def cmd_collapse(args: argparse.Namespace, *, run: bool) -> int:
    """``plan``/``commit --connect URI --domain NAME --all-disks``: every disk, then a summary."""
    from backchain.engines import libvirt as lv
    from backchain.engines.progress import CancelToken

    if not args.domain:
        raise PlanError("--all-disks needs --domain NAME")
    given = [name for name in _NOT_WITH_ALL_DISKS if getattr(args, name, None)]
    if given:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise PlanError(f"--all-disks commits each disk's whole chain into its bottom image; "
                        f"{names} apply to one disk (use --disk)")  # fmt: skip
    on_ready = OnReady.ASK
    if getattr(args, "pivot", False):
        on_ready = OnReady.PIVOT
    elif getattr(args, "keep_overlay", False):
        on_ready = OnReady.KEEP_OVERLAY
    rate = getattr(args, "rate", 0) or 0
    plans = lv.plan_collapse(args.connect, args.domain, on_ready=on_ready,
                             repoint=args.repoint, rate=rate)  # fmt: skip
    if not run or not args.yes:
        _print_collapse_plans(args, plans)
    if not run:
        return 0
    online = [d for d, p in plans if isinstance(p, CommitPlan) and p.active_commit
              and not _offline(p)]  # fmt: skip
    if online and on_ready is OnReady.ASK:
        raise PlanError(f"{', '.join(online)}: an active commit needs --pivot or --keep-overlay")
    if not args.yes:
        sys.stdout.write(f"\nCollapse the chains of {args.domain}? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing was changed.", file=sys.stderr)
            return 2
    stream = None if args.json else sys.stdout
    cancel = CancelToken()
    outcome: list[Any] = []

    def work() -> None:  # runs in the collapse thread, so that Ctrl-C cancels cleanly
        try:
            sink_for = lambda disk: DiskLines(disk, stream)  # noqa: E731
            outcome.append(lv.run_collapse(args.connect, args.domain, plans, sink_for, cancel))
        except BaseException as err:  # reported below, on the main thread
            outcome.append(err)

    _run_cancellable(work, cancel)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    results = outcome[0]
    text = lv.summary(args.domain, results)
    if args.json:
        print(json.dumps({"domain": args.domain, "ok": all(r.ok for r in results),
                          "results": [{"disk": r.disk, "ok": r.ok, "message": r.message}
                                      for r in results],
                          "summary": text}, indent=2))  # fmt: skip
    else:
        print(text)
    return 0 if results and all(r.ok for r in results) else 1


def _run_cancellable(work: Callable[[], None], cancel: Any) -> None:
    """Run ``work`` in a thread that Ctrl-C and SIGTERM cancel (see cli.run_cancellable)."""
    from backchain.cli import run_cancellable

    run_cancellable(work, cancel, "backchain-collapse")


def _print_collapse_plans(args: argparse.Namespace, plans: list[Any]) -> None:
    from backchain import cli

    if args.json:
        print(json.dumps({"uri": args.connect, "domain": args.domain, "disks": [
            {"disk": disk, "plan": plan.to_json()} if isinstance(plan, CommitPlan)
            else {"disk": disk, "error": plan.summary} for disk, plan in plans
        ]}, indent=2))  # fmt: skip
        return
    for disk, plan in plans:
        print(f"== {args.domain} {disk}")
        if isinstance(plan, CommitPlan):
            cli.print_plan(plan, False)
        else:
            print(f"not committed: {plan.summary}")
