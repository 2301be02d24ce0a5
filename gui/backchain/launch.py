"""The ``backchain`` program: the command line, which opens the window for ``backchain gui``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

_window_opened = False


def open_window(args: argparse.Namespace) -> int:
    """Start the Qt window (imported only now: the other commands never load Qt)."""
    global _window_opened
    _window_opened = True
    try:
        from backchain.ui.app import run_gui
    except ImportError as err:
        target = "the demo" if args.demo else args.image or "nothing"
        print(f"backchain: the window cannot start ({err}); would open {target}", file=sys.stderr)
        return 1
    return run_gui(args.image, demo=args.demo, quit_after=args.quit_after,
                   self_test=args.self_test, scan_dirs=tuple(args.scan or ()))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status follows the CLI's rules (0, 1 failed, 2 refused)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # Scripts ask this to probe for Backchain: answer before the parser is even built.
        from backchain import __version__

        print(f"backchain {__version__}")
        return 0
    # The parser alone first: --help and usage errors end here, before the commands load.
    from backchain.cli.parser import parse

    parsed = parse(args)
    _read_chain_early(parsed)
    from backchain.cli.commands import run_parsed

    return run_parsed(parsed, open_window)


def _read_chain_early(parsed: argparse.Namespace) -> None:
    """An offline command on an image: start reading its chain before the commands load."""
    if parsed.command not in ("chain", "plan", "commit", "pull") or not getattr(
        parsed, "image", None
    ):
        return
    if any(getattr(parsed, name, None) for name in ("qmp", "connect", "domain", "disk")):
        return
    from backchain.engines.files.scan import read_early

    read_early(parsed.image)


def run() -> int:
    """The program's entry (console script, ``python -m backchain``): main(), then the exit.

    Tearing the interpreter down (module dictionaries, every object's deallocation) costs a
    command line about 10 ms that nothing needs. It is skipped only when that is provably
    all the teardown would do: see _may_end_now. Otherwise the status goes back to sys.exit.
    """
    status = main()
    if _may_end_now():
        os._exit(status)
    return status


def _may_end_now() -> bool:
    """Whether ending the process right now loses nothing a normal exit would have done.

    By the time main() returns, every file Backchain wrote was written through ``with`` and
    fsynced (journal, ledger), locks are plain descriptors the kernel releases, and job
    threads were joined. What remains is checked: both output streams flush without error,
    no thread other than daemons (which a normal exit abandons too) is running, and nobody
    registered an atexit function (logging's handlers, weakref finalizers, executors do).
    The window is never ended early: Qt saves its settings as it is torn down.
    """
    import atexit
    import threading

    if _window_opened:
        return False
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return False  # a normal exit reports this (a closed pipe, a full disk)
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return False
    return atexit._ncallbacks() == 0
