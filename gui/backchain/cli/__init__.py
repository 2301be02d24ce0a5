"""The command line: parser, options, commands, output, confirmation and terminal progress."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``backchain`` entry point (imports only what the command needs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # Scripts ask this to probe for Backchain: answer before the parser is even built.
        from backchain import __version__

        print(f"backchain {__version__}")
        return 0
    from backchain.cli.main import main as run

    return run(args)
