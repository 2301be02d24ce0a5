"""The command line: gui (the default), chain, plan, commit, demo, resume, snapshot-delete."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from backchain import __version__
from backchain.cli import journal as cli_journal
from backchain.cli import libvirt as cli_libvirt
from backchain.cli import qmp as cli_qmp
from backchain.cli import snapshots as cli_snapshots
from backchain.cli.options import add_plan_options, request_from, resolve_arg
from backchain.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    confirm,
    layer_json,
    nothing_changed,
    print_plan,
)
from backchain.cli.progress import execute
from backchain.core.describe import human_bytes, internal_snapshots_text
from backchain.core.errors import BackchainError, EngineError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan
from backchain.engines import ledger
from backchain.engines.base import ImageTarget

SUBCOMMANDS = ("chain", "plan", "commit", "pull", "demo", "gui", "resume", "snapshot-delete")


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", nargs="?", help="the active image of the chain")
    parser.add_argument("--scan", action="append", metavar="DIR", default=None,
                        help="also search DIR for images that share a layer (repeatable; the "
                             "directories of the chain's images are always searched)")  # fmt: skip
    parser.add_argument("--no-default-scan", action="store_true",
                        help="search only the --scan directories, not the chain's own")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON")
    cli_libvirt.add_source_options(parser)
    cli_qmp.add_source_options(parser)


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    add_plan_options(parser)
    cli_libvirt.add_plan_options(parser)
    cli_qmp.add_plan_options(parser)
    cli_snapshots.add_plan_options(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for the sub-commands."""
    parser = argparse.ArgumentParser(
        prog="backchain", description="Preview and run qcow2 block commits safely."
    )
    parser.add_argument("--version", action="version", version=f"backchain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gui = sub.add_parser("gui", help="open the window (the default)")
    gui.add_argument("image", metavar="IMAGE", nargs="?")
    gui.add_argument("--demo", action="store_true", help="open a demo chain made for the purpose")
    gui.add_argument("--self-test", action="store_true",
                     help="open the demo, plan a commit, exit 0 when all worked")  # fmt: skip
    gui.add_argument("--quit-after", type=float, metavar="SECONDS")
    gui.add_argument("--scan", action="append", metavar="DIR", default=None,
                     help="also search DIR for images that share a layer (repeatable)")  # fmt: skip
    chain = sub.add_parser("chain", help="show the chain and the images that share its layers")
    _add_source(chain)
    plan = sub.add_parser("plan", help="show what a commit would do, without doing it")
    _add_source(plan)
    _add_plan_options(plan)
    commit = sub.add_parser("commit", help="run a commit")
    _add_source(commit)
    _add_plan_options(commit)
    commit.add_argument("--rate", type=int, default=0, metavar="BYTES_PER_S",
                        help="bandwidth limit in bytes per second")  # fmt: skip
    commit.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    plan.add_argument(
        "--pull",
        action="store_true",
        help="plan a pull (top receives the data; --base stays below it)",
    )
    pull = sub.add_parser("pull", help="run a pull: copy the backing data up into top")
    _add_source(pull)
    _add_plan_options(pull)
    pull.add_argument("--rate", type=int, default=0, metavar="BYTES_PER_S",
                      help="bandwidth limit in bytes per second (online)")  # fmt: skip
    pull.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    demo = sub.add_parser("demo", help="create the demo chain and print its active image")
    demo.add_argument("directory", nargs="?", help="where to create it (default: a temp dir)")
    cli_journal.add_parser(sub)
    cli_snapshots.add_parser(sub)
    return parser


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    first = next((a for a in args if a not in ("-h", "--help", "--version")), None)
    if args and args[0] in ("-h", "--help", "--version"):
        return args
    if first is None or first not in SUBCOMMANDS:
        return ["gui", *args]
    return args


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
    return QemuImgEngine().read_graph(image_target(args))


def _active_of(graph: ImageGraph, image: str) -> str:
    found = graph.find(resolve_arg(image) or image)
    if found is None:
        raise BackchainError(f"could not find image '{image}'")
    return found.path


def cmd_chain(args: argparse.Namespace) -> int:
    """``backchain chain``."""
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
    return cli_journal.cmd_resume(args)


COMMANDS = {"chain": cmd_chain, "plan": cmd_plan, "commit": cmd_commit, "pull": cmd_commit,
            "demo": cmd_demo, "resume": cmd_resume,
            "snapshot-delete": cli_snapshots.cmd_snapshot_delete}  # fmt: skip


def main(argv: Sequence[str] | None = None, open_window: WindowOpener | None = None) -> int:
    """Entry point: returns 0 on success, 2 for a refused request, 1 for a failed operation."""
    args = build_parser().parse_args(_normalise_argv(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "gui":
            return cmd_gui(args, open_window)
        handled = cli_libvirt.dispatch(args)  # --connect URI
        return handled if handled is not None else COMMANDS[args.command](args)
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
