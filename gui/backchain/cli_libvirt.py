"""The command line's libvirt options: --connect URI, --domain, --disk and --repoint."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from backchain.core.errors import PlanError
from backchain.core.model import CommitPlan, OnReady


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--connect URI`` in place of IMAGE, with ``--domain`` and ``--disk``."""
    parser.add_argument(
        "--connect", metavar="URI", help="a libvirt URI (qemu:///system, qemu+ssh://host/system)"
    )
    parser.add_argument("--domain", metavar="NAME", help="with --connect: the domain")
    parser.add_argument("--disk", metavar="TARGET", help="with --connect: the disk (vda)")


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """``--repoint``: after an offline commit of a shut-off domain, switch its disk to base."""
    parser.add_argument("--repoint", action="store_true",
                        help="with --connect, domain shut off, top active: point the disk at "
                             "base (virDomainDefineXML)")  # fmt: skip


def dispatch(args: argparse.Namespace) -> int | None:
    """Run chain/plan/commit for --connect; None when --connect was not given."""
    if not getattr(args, "connect", None):
        return None
    if getattr(args, "image", None) or getattr(args, "qmp", None):
        raise PlanError("give either IMAGE, --qmp SOCKET or --connect URI, not several")
    if args.command == "chain":
        return cmd_chain(args)
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
    document = []
    for disk in disks:
        graph = lv.read_domain_graph(args.connect, args.domain, disk)
        chain = [layer for layer in graph if layer.extra.get("label")]
        others = [layer for layer in graph if not layer.extra.get("label")]
        document.append({"disk": disk, "chain": [_layer(x) for x in chain],
                         "others": [_layer(x) for x in others]})  # fmt: skip
        if not args.json:
            print(f"{args.domain} {disk}:")
            for depth, layer in enumerate(chain):
                print(f"  {'  ' * depth}{layer.extra['label']}  {layer.path}")
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
    return lv.plan_commit(target, request, repoint=args.repoint), target


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
