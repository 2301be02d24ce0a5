"""The command line's libvirt options: --connect URI, --domain, --disk, --repoint, --all-disks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from backchain.cli import journal as cli_journal
from backchain.cli import snapshots as cli_snapshots
from backchain.cli.options import ready_choice, request_from
from backchain.cli.output import ask, confirm, layer_json, nothing_changed, print_plan
from backchain.cli.progress import execute, run_cancellable
from backchain.core.describe import internal_snapshots_text
from backchain.core.errors import PlanError
from backchain.core.model import CommitPlan, EngineKind, OnReady, Operation, Step, StepKind
from backchain.core.valueclass import replace


def dispatch(args: argparse.Namespace) -> int | None:
    """Run chain/plan/commit for --connect; None when --connect was not given."""
    if not getattr(args, "connect", None):
        return None
    if getattr(args, "qmp", None):
        raise PlanError("give either IMAGE, --qmp SOCKET or --connect URI, not several")
    if getattr(args, "image", None):
        check_offline(args)
        return None  # commands.compute_plan plans it, through offline_plan
    handled = cli_snapshots.dispatch(args)  # --delete-snapshot
    if handled is not None:
        return handled
    if args.command == "chain":
        return cmd_chain(args)
    if args.command in ("plan", "commit") and getattr(args, "all_disks", False):
        return cmd_collapse(args, run=args.command == "commit")
    if args.command in ("plan", "commit", "pull"):
        return cmd_commit(args, run=args.command in ("commit", "pull"))
    return None


def check_offline(args: argparse.Namespace) -> None:
    """IMAGE with ``--connect URI --domain NAME``: plan, commit or pull, without --disk."""
    if args.command not in ("plan", "commit", "pull") or not args.domain:
        raise PlanError("IMAGE with --connect URI needs --domain NAME and plan, commit or pull: "
                        "the domain whose snapshots and state an offline job respects")  # fmt: skip
    if args.disk or getattr(args, "all_disks", False) or getattr(args, "delete_snapshot", None):
        raise PlanError("give IMAGE (an offline qemu-img job on a shut-off domain's files) or "
                        "--disk/--all-disks/--delete-snapshot (the domain's own jobs), "
                        "not both")  # fmt: skip


def offline_plan(
    args: argparse.Namespace, graph: Any, request: Any, image: Any
) -> tuple[CommitPlan, object]:
    """qemu-img's plan for IMAGE, refused while the domain runs, under its snapshots' guard."""
    from backchain.engines.libvirt.offline import plan_domain_files

    drop = bool(getattr(args, "drop_snapshot_metadata", False))
    return plan_domain_files(graph, request, image, args.connect, args.domain,
                             repoint=args.repoint, drop_snapshot_metadata=drop)  # fmt: skip


def _layer(layer: Any) -> dict[str, Any]:
    return {"label": layer.extra.get("label"), **layer_json(layer)}


def cmd_chain(args: argparse.Namespace) -> int:
    """``chain --connect URI [--domain NAME [--disk vda]]``: domains, disks, chains."""
    from backchain.engines.libvirt import engine as lv

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
            for info in dom.disks:
                print(f"  {info.target}  {info.chain[0].path}")
        return 0
    disks = [args.disk] if args.disk else _disks_of(args.connect, args.domain)
    snaps = cli_snapshots.domain_snapshots(args.connect, args.domain)
    document = []
    for disk in disks:
        graph = lv.read_domain_graph(args.connect, args.domain, disk)
        chain = [layer for layer in graph if layer.extra.get("label")]
        others = [layer for layer in graph if not layer.extra.get("label")]
        # An interrupted job on these files is said first, as for `chain IMAGE`.
        unfinished = cli_journal.warn_unfinished(graph.paths)
        document.append({"disk": disk, "unfinished_jobs": unfinished, "chain": [
            {**_layer(x), "libvirt_snapshots": cli_snapshots.libvirt_snapshots_json(snaps, x.path)}
            for x in chain], "others": [_layer(x) for x in others]})  # fmt: skip
        if not args.json:
            print(f"{args.domain} {disk}:")
            for depth, layer in enumerate(chain):
                internal = internal_snapshots_text(layer)
                print(f"  {'  ' * depth}{layer.extra['label']}  {layer.path}"
                      f"{cli_snapshots.snapshot_text(snaps, layer.path)}"
                      f"{f'  [{internal}]' if internal else ''}")  # fmt: skip
            for layer in others:
                print(f"  also on this chain: {layer.path} -> {layer.backing_path}")
    if args.json:
        print(json.dumps({"uri": args.connect, "domain": args.domain, "disks": document}, indent=2))
    return 0


def _disks_of(uri: str, domain: str) -> list[str]:
    from backchain.engines.libvirt import engine as lv

    for dom in lv.list_domains(uri):
        if dom.name == domain:
            return [disk.target for disk in dom.disks]
    raise PlanError(f"no domain '{domain}' on {uri}")


def compute_plan(args: argparse.Namespace) -> tuple[CommitPlan, object]:
    """The plan for ``--domain``/``--disk`` and the LibvirtTarget that runs it."""
    from backchain.engines.libvirt import engine as lv

    if not args.domain or not args.disk:
        raise PlanError("plan and commit with --connect need --domain NAME and --disk TARGET")
    on_ready, active = ready_choice(args)
    request = request_from(args, "", engine=EngineKind.LIBVIRT)
    request = replace(request, on_ready=on_ready, active=active)
    target = lv.LibvirtTarget(args.connect, args.domain, args.disk)
    drop = bool(getattr(args, "drop_snapshot_metadata", False))  # issue 14
    return lv.plan_commit(target, request, repoint=args.repoint,
                          drop_snapshot_metadata=drop), target  # fmt: skip


def cmd_commit(args: argparse.Namespace, *, run: bool) -> int:
    """``plan``/``commit --connect URI --domain NAME --disk vda [...]``."""
    plan, target = compute_plan(args)
    if not run:
        print_plan(plan, args.json)
        return 0
    if (plan.active_commit and plan.operation is Operation.COMMIT
            and plan.request.on_ready is OnReady.ASK and not _offline(plan)):  # fmt: skip
        raise PlanError("an active commit needs --pivot or --keep-overlay")
    if not args.yes and not confirm(plan):
        return nothing_changed()
    return execute(plan, args.json, target)


def _offline(plan: CommitPlan) -> bool:
    return bool(plan.steps) and plan.steps[0].kind is StepKind.LIBVIRT_STATE


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
    from backchain.engines.libvirt import collapse
    from backchain.engines.progress import CancelToken
    from backchain.engines.runner import run_plan

    if not args.domain:
        raise PlanError("--all-disks needs --domain NAME")
    given = [name for name in _NOT_WITH_ALL_DISKS if getattr(args, name, None)]
    if given:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise PlanError(f"--all-disks commits each disk's whole chain into its bottom image; "
                        f"{names} apply to one disk (use --disk)")  # fmt: skip
    on_ready, _active = ready_choice(args)
    rate = getattr(args, "rate", 0) or 0
    plans = collapse.plan_collapse(args.connect, args.domain, on_ready=on_ready,
                             repoint=args.repoint, rate=rate)  # fmt: skip
    if not run or not args.yes:
        _print_collapse_plans(args, plans)
    if not run:
        return 0
    online = [d for d, p in plans if isinstance(p, CommitPlan) and p.active_commit
              and not _offline(p)]  # fmt: skip
    if online and on_ready is OnReady.ASK:
        raise PlanError(f"{', '.join(online)}: an active commit needs --pivot or --keep-overlay")
    if not args.yes and not ask(f"\nCollapse the chains of {args.domain}?"):
        return nothing_changed()
    stream = None if args.json else sys.stdout
    cancel = CancelToken()
    outcome: list[Any] = []

    def work() -> None:  # runs in the collapse thread, so that Ctrl-C cancels cleanly
        sink_for = lambda disk: DiskLines(disk, stream)  # noqa: E731
        outcome.append(
            collapse.run_collapse(
                args.connect,
                args.domain,
                plans,
                sink_for,
                cancel,
                run_plan,
                offline_jobs=args.offline_jobs,
            )
        )

    run_cancellable(work, cancel, "backchain-collapse")
    results = outcome[0]
    text = collapse.summary(args.domain, results)
    if args.json:
        print(json.dumps({"domain": args.domain, "ok": all(r.ok for r in results),
                          "results": [{"disk": r.disk, "ok": r.ok, "message": r.message}
                                      for r in results],
                          "summary": text}, indent=2))  # fmt: skip
    else:
        print(text)
    return 0 if results and all(r.ok for r in results) else 1


def _print_collapse_plans(args: argparse.Namespace, plans: list[Any]) -> None:
    if args.json:
        print(json.dumps({"uri": args.connect, "domain": args.domain, "disks": [
            {"disk": disk, "plan": plan.to_json()} if isinstance(plan, CommitPlan)
            else {"disk": disk, "error": plan.summary} for disk, plan in plans
        ]}, indent=2))  # fmt: skip
        return
    for disk, plan in plans:
        print(f"== {args.domain} {disk}")
        if isinstance(plan, CommitPlan):
            print_plan(plan, False)
        else:
            print(f"not committed: {plan.summary}")
