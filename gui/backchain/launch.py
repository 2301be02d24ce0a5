"""The ``backchain`` program: the command line, which opens the window for ``backchain gui``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def open_window(args: argparse.Namespace) -> int:
    """Start the Qt window (imported only now: the other commands never load Qt)."""
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
    from backchain.cli.commands import run_parsed

    return run_parsed(parsed, open_window)
