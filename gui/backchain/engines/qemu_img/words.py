"""How a qemu-img job leaves the files, in the user's words."""

from __future__ import annotations

import os
from collections.abc import Sequence

from backchain.core.model import CommitPlan, Operation, Step, StepKind


def describe_state(plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
    """Where every file stands after the steps in ``done`` (and perhaps a part of ``failed``)."""
    if plan.operation is Operation.PULL:
        return describe_pull_state(plan, done, failed)
    name = os.path.basename
    kinds = {step.kind for step in done}
    overlays = ", ".join(name(r.image) for r in plan.rebased) or "nothing"
    lines = []
    if StepKind.COMMIT not in kinds:
        lines.append(
            f"{name(plan.base)} may be partly written. {name(plan.top)} still reads correctly, "
            f"and so does {overlays} on top of it."
        )
        if plan.at_risk:
            risky = ", ".join(name(a.image) for a in plan.at_risk)
            lines.append(f"{risky} may already read changed data from {name(plan.base)}.")
        lines.append("Running the same commit again is safe and completes it.")
        return "\n".join(lines)
    lines.append(f"{name(plan.base)} holds the merged data of {name(plan.top)}.")
    rebased = {s.target for s in done if s.kind is StepKind.REBASE}
    pending = [r.image for r in plan.rebased if r.image not in rebased]
    if rebased:
        lines.append(f"Re-pointed to {name(plan.base)}: " + ", ".join(map(name, sorted(rebased))))
    if pending:
        lines.append(
            "Still on "
            + name(plan.top)
            + " (and reading correctly): "
            + ", ".join(map(name, pending))
            + ". Re-point them with the rebase steps, or run the commit again."
        )
    return "\n".join(lines + _deletions(plan, done, failed, "Not deleted"))


def describe_pull_state(plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
    """A pull: top keeps its old chain until qemu-img rebase ends, so it always reads correctly."""
    name = os.path.basename
    old = name(plan.merged[0]) if plan.merged else "its backing file"
    if not any(step.kind is StepKind.PULL for step in done):
        return (
            f"{name(plan.top)} is still backed by {old} and reads correctly; it may already "
            "hold some of the copied data. No other file was changed. Running the same pull "
            "again is safe and completes it."
        )
    where = f"now backed by {name(plan.base)}" if plan.base else "now standalone"
    lines = [f"{name(plan.top)} holds the pulled data and is {where}."]
    return "\n".join(lines + _deletions(plan, done, failed, "Not deleted (unchanged)"))


def _deletions(
    plan: CommitPlan, done: Sequence[Step], failed: Step | None, kept_words: str
) -> list[str]:
    """Which of the plan's files are gone and which are kept, and why none went."""
    name = os.path.basename
    deleted = [s.target for s in done if s.kind is StepKind.DELETE]
    kept = [p for p in plan.deleted if p not in deleted]
    lines = []
    if deleted:
        lines.append("Deleted: " + ", ".join(map(name, deleted)))
    if kept:
        lines.append(f"{kept_words}: " + ", ".join(map(name, kept)))
    if failed is not None and failed.kind is StepKind.VERIFY:
        lines.append("Nothing was deleted, because the verification did not pass.")
    return lines
