"""The command line: gui (the default), chain, plan, commit, demo, resume, snapshot-delete."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from backchain.cli import qmp as cli_qmp
from backchain.cli.options import request_from, resolve_arg
from backchain.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    confirm,
    layer_json,
    nothing_changed,
    print_plan,
)
from backchain.cli.parser import parse
from backchain.core.describe import human_bytes, internal_snapshots_text
from backchain.core.errors import BackchainError, EngineError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan
from backchain.engines.base import ImageTarget

# What each command needs once it has its graph, loaded while qemu-img reads the chain (the
# process waits for it there anyway): the planner, the job's lifecycle, the journal's CLI.
_AFTER_THE_GRAPH = {
    "chain": ("backchain.cli.journal", "backchain.engines.ledger"),
    "plan": ("backchain.engines.registry", "backchain.core.plan"),
    "commit": ("backchain.engines.registry", "backchain.core.plan", "backchain.cli.progress",
               "backchain.engines.runner"),
}  # fmt: skip
_AFTER_THE_GRAPH["pull"] = _AFTER_THE_GRAPH["commit"]


def image_target(args: argparse.Namespace) -> ImageTarget:
    """The files the arguments name, with the directories to scan for siblings."""
    if not args.image:
        raise BackchainError("no image given (backchain chain IMAGE)")
    return ImageTarget(args.image, tuple(args.scan or ()), not args.no_default_scan,
                       secrets=tuple(getattr(args, "object", None) or ()))  # fmt: skip


def load_graph(args: argparse.Namespace) -> ImageGraph:
    """Read the graph the arguments name, with siblings, file facts and extents."""
    from backchain.engines.qemu_img.engine import QemuImgEngine

    if getattr(args, "qmp", None):
        return cli_qmp.load_graph(args)
    modules = _AFTER_THE_GRAPH.get(args.command, ())
    return QemuImgEngine().read_graph(
        image_target(args), meanwhile=lambda: [importlib.import_module(m) for m in modules]
    )


def _active_of(graph: ImageGraph, image: str) -> str:
    found = graph.find(resolve_arg(image) or image)
    if found is None:
        raise BackchainError(f"could not find image '{image}'")
    return found.path


def cmd_chain(args: argparse.Namespace) -> int:
    """``backchain chain``."""
    from backchain.cli import journal as cli_journal
    from backchain.engines import ledger

    graph = load_graph(args)
    active = _active_of(graph, args.image)
    chain = graph.chain(active)
    others = [layer for layer in graph if layer.path not in {c.path for c in chain}]
    unfinished = cli_journal.warn_unfinished(graph.paths)
    marks = {path: mark.text for path, mark in ledger.marks(graph.paths).items()}
    if args.json:
        document = {
            "unfinished_jobs": unfinished,
            "image": active,
            "chain": [{**layer_json(x), "ledger": marks.get(x.path)} for x in chain],
            "others": [{**layer_json(x), "ledger": marks.get(x.path)} for x in others],
            "edges": [[a, b] for a, b in graph.edges],
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    for depth, layer in enumerate(chain):
        badges = " [in use]" if layer.in_use else ""
        badges += f" node {layer.node_name}" if layer.node_name else ""
        badges += f" [{marks[layer.path]}]" if layer.path in marks else ""
        internal = internal_snapshots_text(layer)
        badges += f" [{internal}]" if internal else ""
        print(f"{'  ' * depth}{layer.path}  {layer.format} {human_bytes(layer.virtual_size)}, "
              f"own {human_bytes(layer.allocated_bytes)}{badges}")  # fmt: skip
    for layer in others:
        mark = f" [{marks[layer.path]}]" if layer.path in marks else ""
        print(f"also on this chain: {layer.path} -> {layer.backing_path}{mark}")
    return EXIT_OK


def compute_plan(args: argparse.Namespace) -> tuple[CommitPlan, object]:
    """Load the graph and plan the request the options describe; the plan and its target."""
    from backchain.engines.registry import make_plan

    graph = load_graph(args)
    request = request_from(args, _active_of(graph, args.image), graph=graph)
    if getattr(args, "connect", None):  # IMAGE --connect URI --domain NAME: offline, guarded
        from backchain.cli import libvirt as cli_libvirt  # only with --connect (start-up cost)

        return cli_libvirt.offline_plan(args, graph, request, image_target(args))
    if args.qmp:
        request = cli_qmp.online_request(args, request)
        target: object = cli_qmp.target_of(args)
    else:
        target = image_target(args)
    return make_plan(graph, request, target), target  # type: ignore[arg-type]


def cmd_plan(args: argparse.Namespace) -> int:
    """``backchain plan``."""
    print_plan(compute_plan(args)[0], args.json)
    return EXIT_OK


def cmd_commit(args: argparse.Namespace) -> int:
    """``backchain commit`` and ``backchain pull``."""
    from backchain.cli.progress import execute

    plan, target = compute_plan(args)
    if args.qmp:
        cli_qmp.check_runnable(plan)
    if not args.yes and not confirm(plan):
        return nothing_changed()
    return execute(plan, args.json, target)


def cmd_demo(args: argparse.Namespace) -> int:
    """``backchain demo``: create the demo tree."""
    from backchain.engines.demo import make_demo

    print(make_demo(args.directory))
    return EXIT_OK


WindowOpener = Callable[[argparse.Namespace], int]
"""Opens the window for ``backchain gui``; the launcher hands it in (cli never imports Qt)."""


def cmd_gui(args: argparse.Namespace, open_window: WindowOpener | None) -> int:
    """Open the window, through the launcher's opener."""
    if open_window is None:
        print("backchain: this entry point has no window; run 'backchain gui'", file=sys.stderr)
        return EXIT_FAILED
    args.image = resolve_arg(args.image)
    return open_window(args)


def cmd_resume(args: argparse.Namespace) -> int:
    """``backchain resume``: see cli/journal.py."""
    from backchain.cli import journal as cli_journal

    return cli_journal.cmd_resume(args)


def cmd_snapshot_delete(args: argparse.Namespace) -> int:
    """``backchain snapshot-delete``: see cli/snapshots.py."""
    from backchain.cli import snapshots as cli_snapshots

    return cli_snapshots.cmd_snapshot_delete(args)


COMMANDS = {"chain": cmd_chain, "plan": cmd_plan, "commit": cmd_commit, "pull": cmd_commit,
            "demo": cmd_demo, "resume": cmd_resume,
            "snapshot-delete": cmd_snapshot_delete}  # fmt: skip


def main(argv: Sequence[str] | None = None, open_window: WindowOpener | None = None) -> int:
    """Entry point: returns 0 on success, 2 for a refused request, 1 for a failed operation."""
    return run_parsed(parse(sys.argv[1:] if argv is None else argv), open_window)


def run_parsed(args: argparse.Namespace, open_window: WindowOpener | None = None) -> int:
    """Run the parsed command, with the CLI's exit statuses."""
    try:
        if args.command == "gui":
            return cmd_gui(args, open_window)
        if getattr(args, "connect", None):
            # libvirt's commands (and their XML parsing) load only when --connect asks for them.
            from backchain.cli import libvirt as cli_libvirt

            handled = cli_libvirt.dispatch(args)
            if handled is not None:
                return handled
        elif getattr(args, "domain", None) or getattr(args, "disk", None):
            raise PlanError("--domain and --disk name a libvirt domain's disk: add --connect URI")
        return COMMANDS[args.command](args)
    except EngineError as err:
        print(f"backchain: {err.message}", file=sys.stderr)
        if err.state:
            print(err.state, file=sys.stderr)
        if err.details and os.environ.get("BACKCHAIN_DEBUG"):
            print(err.details, file=sys.stderr)
        return EXIT_FAILED
    except BackchainError as err:
        print(f"backchain: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
