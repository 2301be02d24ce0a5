"""Plain-language wording of a plan, shared by the CLI and the window so both say the same."""

from __future__ import annotations

import os.path

from backchain.core.model import CommitPlan


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


def consequences(plan: CommitPlan) -> list[str]:
    """One sentence per effect, naming the file and the bytes."""
    name = os.path.basename
    base = name(plan.base)
    lines = [
        f"{name(plan.top)} is committed into {base}: "
        f"{human_bytes(plan.bytes_to_copy)} to copy from {len(plan.merged)} layer(s)."
    ]
    for item in plan.invalid:
        if item.bytes is None:
            amount = "an unknown amount (allocation still loading)"
        else:
            amount = human_bytes(item.bytes)
        lines.append(f"{name(item.image)}: invalid at once; {amount} would read wrong data.")
    for path in plan.stale:
        if path in plan.deleted:
            continue
        if plan.engine != "qemu-img" and plan.active_commit:
            lines.append(f"{name(path)}: stays valid until the job pivots to {base}.")
        else:
            lines.append(f"{name(path)}: reads correctly until {base} is written again (stale).")
    for rebase in plan.rebased:
        lines.append(
            f"{name(rebase.image)}: re-pointed to {base} (backing name '{rebase.backing_name}')."
        )
    for item in plan.at_risk:
        if item.bytes == 0:
            lines.append(f"{name(item.image)}: hides every changed byte of {base}; unaffected.")
        else:
            lines.append(
                f"{name(item.image)}: {human_bytes(item.bytes)} would read changed data "
                f"from {base}."
            )
    for path in plan.deleted:
        lines.append(f"{name(path)}: deleted after the commit succeeds.")
    for advice in plan.advice:
        if advice.direction is None:
            continue
        ratio = advice.ratio or 0.0
        lines.append(
            f"{name(advice.image)}: {ratio:.0%} allocated; a {advice.direction} copies fewer "
            f"bytes (commit {human_bytes(advice.commit_bytes)}, "
            f"pull {human_bytes(advice.pull_bytes)})."
        )
    lines.extend(plan.notes)
    return lines


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
