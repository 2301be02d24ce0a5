"""The command line: parser, options, commands, output, confirmation and terminal progress."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``backchain`` entry point (imports only what the command needs)."""
    from backchain.cli.main import main as run

    return run(argv)
