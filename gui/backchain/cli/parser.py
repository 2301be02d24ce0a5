"""The argparse tree alone: ``--help`` and a usage error import nothing else of Backchain."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from backchain import __version__

# As core/static_typing.py's, kept here because --help loads this module alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _common_add_plan_options(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--object", action="append", metavar="SPEC", default=None,
                        help="offline, encrypted layers: secret,id=ID,file=KEYFILE, as qemu-img "
                             "takes it (the secret is read from the file)")  # fmt: skip


def _libvirt_add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--connect URI`` in place of IMAGE, with ``--domain`` and ``--disk``."""
    parser.add_argument(
        "--connect", metavar="URI", help="a libvirt URI (qemu:///system, qemu+ssh://host/system)"
    )
    parser.add_argument("--domain", metavar="NAME", help="with --connect: the domain")
    parser.add_argument("--disk", metavar="TARGET", help="with --connect: the disk (vda)")


def _libvirt_add_plan_options(parser: argparse.ArgumentParser) -> None:
    """``--repoint`` (shut-off domains) and ``--all-disks`` (collapse a VM's chains)."""
    parser.add_argument("--repoint", action="store_true",
                        help="with --connect, domain shut off, top active: point the disk at "
                             "base (virDomainDefineXML)")  # fmt: skip
    parser.add_argument("--all-disks", action="store_true",
                        help="with --connect and --domain: commit every disk's whole chain "
                             "into its bottom image, all disks at once")  # fmt: skip
    parser.add_argument("--offline-jobs", type=int, default=2, metavar="N",
                        help="with --all-disks on a shut-off domain: at most N qemu-img "
                             "processes at once (default 2)")  # fmt: skip


def _qmp_add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--qmp SOCKET`` in place of IMAGE, and ``--device`` to pick one of several chains."""
    parser.add_argument(
        "--qmp",
        metavar="SOCKET",
        help="read the live chain of a running QEMU (unix socket or host:port)",
    )
    parser.add_argument(
        "--device", metavar="NODE", help="with --qmp: the device or root node whose chain to use"
    )


def _qmp_add_plan_options(parser: argparse.ArgumentParser) -> None:
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


def _snapshot_add_parser(sub: Any) -> None:
    """``backchain snapshot-delete --connect URI --domain NAME SNAPSHOT [--yes] [--json]``."""
    parser = sub.add_parser(
        "snapshot-delete",
        help="delete a libvirt snapshot the way libvirt does (virDomainSnapshotDelete)",
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="the snapshot's name")
    parser.add_argument("--connect", metavar="URI", required=True, help="a libvirt URI")
    parser.add_argument("--domain", metavar="NAME", required=True, help="the domain")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _snapshot_add_plan_options(parser: argparse.ArgumentParser) -> None:
    """``--delete-snapshot NAME`` (preview a snapshot deletion) and ``--drop-snapshot-metadata``."""
    parser.add_argument(
        "--delete-snapshot",
        metavar="SNAPSHOT",
        help="with --connect and --domain: preview deleting this libvirt "
        "snapshot (what snapshot-delete does)",
    )
    parser.add_argument(
        "--drop-snapshot-metadata",
        action="store_true",
        help="with --connect: commit even over files that libvirt snapshots "
        "name, then remove those snapshots' metadata",
    )


def _resume_add_parser(sub: Any) -> None:
    """Add the ``resume`` sub-command to the CLI's sub-parsers."""
    parser = sub.add_parser(
        "resume",
        help="list interrupted commits, run the rest of one, or dismiss it",
        description="Without ID: list unfinished jobs. With ID: check the files and run the "
        "steps that did not complete.",
    )
    parser.add_argument("job", metavar="ID", nargs="?", help="the job (a unique prefix will do)")
    parser.add_argument("--dismiss", action="store_true", help="forget the job; change nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _terminal_columns() -> int:
    """What shutil.get_terminal_size() says about the width, without importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter with the width given: argparse builds one for every option it
    adds, and its own asks shutil (with bz2 and lzma, 3 ms) for the terminal's width."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
        width: int | None = None,
    ) -> None:  # fmt: skip
        width = _terminal_columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (and, through add_subparsers, its sub-parsers) with that formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


SUBCOMMANDS = ("chain", "plan", "commit", "pull", "demo", "gui", "resume", "snapshot-delete")


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", nargs="?", help="the active image of the chain")
    parser.add_argument("--scan", action="append", metavar="DIR", default=None,
                        help="also search DIR for images that share a layer (repeatable; the "
                             "directories of the chain's images are always searched)")  # fmt: skip
    parser.add_argument("--no-default-scan", action="store_true",
                        help="search only the --scan directories, not the chain's own")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON")
    _libvirt_add_source_options(parser)
    _qmp_add_source_options(parser)


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    _common_add_plan_options(parser)
    _libvirt_add_plan_options(parser)
    _qmp_add_plan_options(parser)
    _snapshot_add_plan_options(parser)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argparse tree for the sub-commands; with ``only``, that sub-command's branch alone.

    A command's own usage, help and errors come from its branch, so they read the same;
    building the other six branches cost every command a few milliseconds.
    """
    parser = _Parser(prog="backchain", description="Preview and run qcow2 block commits safely.")
    parser.add_argument("--version", action="version", version=f"backchain {__version__}")
    # Every command named in the usage line, however many branches were built.
    every = "{" + ",".join(_BRANCHES) + "}"
    sub = parser.add_subparsers(dest="command", required=True, metavar=every)
    for name, add in _BRANCHES.items():
        if only is None or name == only:
            add(sub)
    return parser


def _gui_add_parser(sub: Any) -> None:
    gui = sub.add_parser("gui", help="open the window (the default)")
    gui.add_argument("image", metavar="IMAGE", nargs="?")
    gui.add_argument("--demo", action="store_true", help="open a demo chain made for the purpose")
    gui.add_argument("--self-test", action="store_true",
                     help="open the demo, plan a commit, exit 0 when all worked")  # fmt: skip
    gui.add_argument("--quit-after", type=float, metavar="SECONDS")
    gui.add_argument("--scan", action="append", metavar="DIR", default=None,
                     help="also search DIR for images that share a layer (repeatable)")  # fmt: skip


def _chain_add_parser(sub: Any) -> None:
    chain = sub.add_parser("chain", help="show the chain and the images that share its layers")
    _add_source(chain)


def _plan_add_parser(sub: Any) -> None:
    plan = sub.add_parser("plan", help="show what a commit would do, without doing it")
    _add_source(plan)
    _add_plan_options(plan)
    plan.add_argument(
        "--pull",
        action="store_true",
        help="plan a pull (top receives the data; --base stays below it)",
    )


def _commit_add_parser(sub: Any) -> None:
    _add_run(sub.add_parser("commit", help="run a commit"), "bandwidth limit in bytes per second")


def _pull_add_parser(sub: Any) -> None:
    pull = sub.add_parser("pull", help="run a pull: copy the backing data up into top")
    _add_run(pull, "bandwidth limit in bytes per second (online)")


def _add_run(command: Any, rate_help: str) -> None:
    """What commit and pull share: the plan's options, then --rate and --yes."""
    _add_source(command)
    _add_plan_options(command)
    command.add_argument("--rate", type=int, default=0, metavar="BYTES_PER_S", help=rate_help)
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _demo_add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="create the demo chain and print its active image")
    demo.add_argument("directory", nargs="?", help="where to create it (default: a temp dir)")


# In the order --help lists them.
_BRANCHES: dict[str, Callable[[Any], None]] = {
    "gui": _gui_add_parser,
    "chain": _chain_add_parser,
    "plan": _plan_add_parser,
    "commit": _commit_add_parser,
    "pull": _pull_add_parser,
    "demo": _demo_add_parser,
    "resume": _resume_add_parser,
    "snapshot-delete": _snapshot_add_parser,
}


def normalise_argv(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    first = next((a for a in args if a not in ("-h", "--help", "--version")), None)
    if args and args[0] in ("-h", "--help", "--version"):
        return args
    if first is None or first not in SUBCOMMANDS:
        return ["gui", *args]
    return args


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed arguments; ``--help`` and usage errors exit here, as argparse does."""
    args = normalise_argv(argv)
    return build_parser(args[0] if args and args[0] in _BRANCHES else None).parse_args(args)
