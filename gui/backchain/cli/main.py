"""The command line: gui (the default), chain, plan, commit and demo, with --json everywhere."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from backchain import __version__
from backchain.cli import libvirt as cli_libvirt
from backchain.cli import qmp as cli_qmp
from backchain.core.errors import BackchainError, EngineError
from backchain.core.model import CommitRequest, EngineKind

if TYPE_CHECKING:
    from backchain.core.graph import ImageGraph, Layer
    from backchain.core.model import CommitPlan
    from backchain.engines.progress import CancelToken

SUBCOMMANDS = ("chain", "plan", "commit", "demo", "gui", "resume")
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def _resolve_arg(value: str | None) -> str | None:
    """A path becomes absolute and symlink-free; anything else (a node name) stays as is."""
    if value is None:
        return None
    if os.path.lexists(value):
        return os.path.realpath(value)
    return value


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", nargs="?", help="the active image of the chain")
    parser.add_argument("--scan", action="append", metavar="DIR", default=None,
                        help="directory to search for siblings (repeatable; default: the "
                             "directories of the chain's images)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON")
    cli_libvirt.add_source_options(parser)
    cli_qmp.add_source_options(parser)


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", metavar="T", help="the highest layer to commit (default: active)")
    parser.add_argument("--base", metavar="B", help="the layer that receives the data")
    parser.add_argument("--shallow", action="store_true", help="commit into top's backing file")
    parser.add_argument("--delete", action="store_true", help="delete the merged layers after")
    parser.add_argument("--keep-relative", action="store_true", help="keep backing names relative")
    parser.add_argument("--no-verify", action="store_true",
                        help="with --delete: skip comparing top's view with base")  # fmt: skip
    cli_libvirt.add_plan_options(parser)
    cli_qmp.add_plan_options(parser)


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
    demo = sub.add_parser("demo", help="create the demo chain and print its active image")
    demo.add_argument("directory", nargs="?", help="where to create it (default: a temp dir)")
    from backchain.cli import journal as cli_journal

    cli_journal.add_parser(sub)
    return parser


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    first = next((a for a in args if a not in ("-h", "--help", "--version")), None)
    if args and args[0] in ("-h", "--help", "--version"):
        return args
    if first is None or first not in SUBCOMMANDS:
        return ["gui", *args]
    return args


def load_graph(args: argparse.Namespace) -> ImageGraph:
    """Read the graph the arguments name, with siblings, file facts and extents."""
    from backchain.engines.files.scan import open_graph

    if getattr(args, "qmp", None):
        return cli_qmp.load_graph(args)
    if not args.image:
        raise BackchainError("no image given (backchain chain IMAGE)")
    return open_graph(args.image, scan_dirs=args.scan)


def request_from(
    args: argparse.Namespace, image: str, engine: EngineKind | str = EngineKind.QEMU_IMG
) -> CommitRequest:
    """The CommitRequest the plan/commit options describe."""
    return CommitRequest(
        image=image,
        top=_resolve_arg(args.top),
        base=_resolve_arg(args.base),
        shallow=args.shallow,
        delete=args.delete,
        keep_relative=args.keep_relative,
        rate=getattr(args, "rate", 0) or 0,
        verify=not args.no_verify,
        engine=EngineKind(engine),
    )


def layer_json(layer: Layer) -> dict[str, Any]:
    """One layer for ``chain --json``."""
    return {
        "path": layer.path,
        "format": layer.format,
        "virtual_size": layer.virtual_size,
        "actual_size": layer.actual_size,
        "backing_name": layer.backing_name,
        "backing_relative": layer.backing_is_relative,
        "backing_format": layer.backing_format,
        "backing": layer.backing_path,
        "allocated": layer.allocated_bytes,
        "extents": None if layer.extents is None else [[s, e - s] for s, e in layer.extents],
        "in_use": layer.in_use,
        "found_by_scan": layer.found_by_scan,
        "node_name": layer.node_name,
    }


def _active_of(graph: ImageGraph, image: str) -> str:
    found = graph.find(_resolve_arg(image) or image)
    if found is None:
        raise BackchainError(f"could not find image '{image}'")
    return found.path


def cmd_chain(args: argparse.Namespace) -> int:
    """``backchain chain``."""
    from backchain.core.describe import human_bytes

    graph = load_graph(args)
    active = _active_of(graph, args.image)
    chain = graph.chain(active)
    others = [layer for layer in graph if layer.path not in {c.path for c in chain}]
    from backchain.cli.journal import warn_unfinished

    unfinished = warn_unfinished(graph.paths)
    if args.json:
        document = {
            "unfinished_jobs": unfinished,
            "image": active,
            "chain": [layer_json(layer) for layer in chain],
            "others": [layer_json(layer) for layer in others],
            "edges": [[a, b] for a, b in graph.edges],
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    for depth, layer in enumerate(chain):
        badges = " [in use]" if layer.in_use else ""
        badges += f" node {layer.node_name}" if layer.node_name else ""
        print(f"{'  ' * depth}{layer.path}  {layer.format} {human_bytes(layer.virtual_size)}, "
              f"own {human_bytes(layer.allocated_bytes)}{badges}")  # fmt: skip
    for layer in others:
        print(f"also on this chain: {layer.path} -> {layer.backing_path}")
    return EXIT_OK


def compute_plan(args: argparse.Namespace) -> CommitPlan:
    """Load the graph and plan the request the options describe."""
    from backchain.engines.registry import make_plan

    graph = load_graph(args)
    request = request_from(args, _active_of(graph, args.image))
    if args.qmp:
        request = cli_qmp.online_request(args, request)
    return make_plan(graph, request)


def print_plan(plan: CommitPlan, as_json: bool) -> None:
    """Show a plan as JSON, or in words with the exact commands."""
    from backchain.core.describe import consequences

    if as_json:
        print(json.dumps(plan.to_json(), indent=2))
        return
    for line in consequences(plan):
        print(line)
    print("\nCommands:")
    for step in plan.steps:
        print("  " + step.as_shell())


def cmd_plan(args: argparse.Namespace) -> int:
    """``backchain plan``."""
    print_plan(compute_plan(args), args.json)
    return EXIT_OK


def _confirm(plan: CommitPlan) -> bool:
    print_plan(plan, False)
    sys.stdout.write("\nRun this commit? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def run_cancellable(work: Callable[[], None], cancel: CancelToken, name: str) -> None:
    """Run ``work`` in a thread; Ctrl-C and SIGTERM cancel it, and it is always waited for."""
    worker = threading.Thread(target=work, name=name)
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.cancel())
    worker.start()
    try:
        while worker.is_alive():
            try:
                worker.join(0.2)
            except KeyboardInterrupt:
                cancel.cancel()
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(plan: CommitPlan, as_json: bool, connection: object | None = None) -> int:
    """Run a plan in a worker thread so that Ctrl-C cancels it cleanly."""
    from backchain.cli.terminal import TerminalSink
    from backchain.engines.progress import CancelToken
    from backchain.engines.runner import run_plan

    cancel = CancelToken()
    sink = TerminalSink(enabled=sys.stderr.isatty() and not as_json)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            run_plan(plan, sink, cancel, connection)
        except BaseException as err:  # reported below, on the main thread
            failure.append(err)

    run_cancellable(work, cancel, "backchain-commit")
    if failure:
        raise failure[0]
    if as_json:
        print(json.dumps({"ok": True, "plan": plan.to_json(), "message": sink.message}, indent=2))
    else:
        print(sink.message)
    return EXIT_OK


def cmd_commit(args: argparse.Namespace) -> int:
    """``backchain commit``."""
    plan = compute_plan(args)
    if args.qmp:
        cli_qmp.check_runnable(plan)
    if not args.yes and not _confirm(plan):
        print("Nothing was changed.", file=sys.stderr)
        return EXIT_REFUSED
    return execute(plan, args.json, args.qmp)


def cmd_demo(args: argparse.Namespace) -> int:
    """``backchain demo``: create the demo tree."""
    from backchain.engines.demo import make_demo

    print(make_demo(args.directory))
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    """Open the window."""
    try:
        from backchain.ui.app import run_gui
    except ImportError as err:
        target = "the demo" if args.demo else args.image or "nothing"
        print(f"backchain: the window cannot start ({err}); would open {target}", file=sys.stderr)
        return EXIT_FAILED
    image = _resolve_arg(args.image)
    return run_gui(image, demo=args.demo, quit_after=args.quit_after, self_test=args.self_test)


def cmd_resume(args: argparse.Namespace) -> int:
    """``backchain resume``: see cli_journal."""
    from backchain.cli.journal import cmd_resume as run

    return run(args)


COMMANDS = {"chain": cmd_chain, "plan": cmd_plan, "commit": cmd_commit, "demo": cmd_demo,
            "gui": cmd_gui, "resume": cmd_resume}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns 0 on success, 2 for a refused request, 1 for a failed operation."""
    args = build_parser().parse_args(_normalise_argv(sys.argv[1:] if argv is None else argv))
    try:
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
