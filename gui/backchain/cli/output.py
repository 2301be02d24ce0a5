"""What the command line prints: exit codes, layers and plans as text or JSON, and y/N questions."""

from __future__ import annotations

import json
import sys

from backchain.core.describe import consequences
from backchain.core.graph import Layer
from backchain.core.model import CommitPlan
from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


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


def print_plan(plan: CommitPlan, as_json: bool) -> None:
    """Show a plan as JSON, or in words with the exact commands."""
    if as_json:
        print(json.dumps(plan.to_json(), indent=2))
        return
    for line in consequences(plan):
        print(line)
    print("\nCommands:")
    for step in plan.steps:
        print("  " + step.as_shell())


def ask(question: str) -> bool:
    """Ask a y/N question on the terminal; anything but y or yes is no."""
    sys.stdout.write(f"{question} [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def confirm(plan: CommitPlan) -> bool:
    """Show the plan, then ask before it runs."""
    print_plan(plan, False)
    return ask(f"\nRun this {plan.operation.value}?")


def nothing_changed() -> int:
    """The user said no."""
    print("Nothing was changed.", file=sys.stderr)
    return EXIT_REFUSED
