"""Plain-language wording of a plan, shared by the CLI and the window so both say the same."""

from __future__ import annotations

import os.path

from backchain.core.model import CommitPlan, Role


def human_bytes(count: int | None) -> str:
    """``4.5 MiB`` style sizes; ``?`` while unknown."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def effects(plan: CommitPlan) -> list[tuple[Role, str]]:
    """Every effect on an image, one sentence each, tagged with the preview's role."""
    name = os.path.basename
    base = name(plan.base)
    merged = ", ".join(name(p) for p in plan.merged)
    lines: list[tuple[Role, str]] = [
        (Role.BASE, f"{base}: receives {human_bytes(plan.bytes_to_copy)} from {merged}")
    ]
    for item in plan.invalid:
        amount = "an unknown amount" if item.bytes is None else human_bytes(item.bytes)
        lines.append(
            (Role.INVALID, f"{name(item.image)}: invalid now; {amount} of its view changes")
        )
    for path in plan.stale:
        if plan.active_commit and _runs_a_live_job(plan):
            text = f"{name(path)}: stays valid until the job pivots to {base}"
        else:
            text = f"{name(path)}: reads correctly until {base} is written again, then stale"
        lines.append((Role.STALE, text))
    for rebase in plan.rebased:
        text = f"{name(rebase.image)}: re-pointed to {base} (backing name '{rebase.backing_name}')"
        lines.append((Role.REBASED, text))
    for item in plan.at_risk:
        if item.bytes is None:
            text = f"{name(item.image)}: may read changed data from {base} (allocation unknown)"
        elif item.bytes == 0:
            text = f"{name(item.image)}: hides every changed byte of {base}; 0 B at risk"
        else:
            text = (
                f"{name(item.image)}: {human_bytes(item.bytes)} would read changed data from {base}"
            )
        lines.append((Role.AT_RISK, text))
    for path in plan.deleted:
        lines.append((Role.DELETED, f"{name(path)}: deleted after the commit succeeds"))
    return lines


def _runs_a_live_job(plan: CommitPlan) -> bool:
    """Whether the commit runs inside a live VM (which pivots), not with qemu-img."""
    return any(step.kind in ("block-commit", "virDomainBlockCommit") for step in plan.steps)


def advice_lines(plan: CommitPlan) -> list[str]:
    """Pull-or-commit advice, one sentence per merged layer whose allocation is known."""
    lines = []
    for advice in plan.advice:
        if advice.direction is None:
            continue
        lines.append(
            f"{os.path.basename(advice.image)}: {advice.ratio or 0.0:.0%} allocated; a "
            f"{advice.direction} copies fewer bytes (commit {human_bytes(advice.commit_bytes)}, "
            f"pull {human_bytes(advice.pull_bytes)})"
        )
    return lines


def consequences(plan: CommitPlan) -> list[str]:
    """The whole preview in words: effects, advice and notes (what the CLI prints)."""
    return [text for _, text in effects(plan)] + advice_lines(plan) + list(plan.notes)


def destructive_effects(plan: CommitPlan) -> list[str]:
    """The effects a confirmation must list: deletions, invalidations, siblings at risk."""
    name = os.path.basename
    effects = [f"Delete {name(p)}" for p in plan.deleted]
    effects += [f"Invalidate {name(a.image)}" for a in plan.invalid if a.image not in plan.deleted]
    effects += [
        f"{name(a.image)} reads {human_bytes(a.bytes)} of changed data"
        for a in plan.at_risk
        if a.bytes
    ]
    return effects
