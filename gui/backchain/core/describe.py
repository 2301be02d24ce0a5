"""Plain-language wording of a plan, shared by the CLI and the window so both say the same."""

from __future__ import annotations

import os.path

from backchain.core.advice import advise
from backchain.core.model import CommitPlan, Operation, Role


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
    if plan.operation is Operation.PULL:
        return pull_effects(plan)
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


def pull_effects(plan: CommitPlan) -> list[tuple[Role, str]]:
    """A pull's effects: top receives the data; nothing else changes."""
    name = os.path.basename
    removed = ", ".join(name(p) for p in plan.merged)
    below = f"stays on {name(plan.base)}" if plan.base else "becomes standalone"
    lines: list[tuple[Role, str]] = [
        (
            Role.BASE,
            f"{name(plan.top)}: receives {human_bytes(plan.bytes_to_copy)} from "
            f"{removed}, and {below}; its view is unchanged",
        ),
    ]
    for path in plan.merged:
        if path in plan.deleted:
            lines.append((Role.DELETED, f"{name(path)}: deleted after the pull is verified"))
        elif path in plan.deletable:
            lines.append((Role.UNTOUCHED, f"{name(path)}: unchanged; nothing uses it any more "
                                          "(--delete removes it)"))  # fmt: skip
        else:
            lines.append((Role.UNTOUCHED, f"{name(path)}: unchanged; other images still use it"))
    lines.append((Role.UNTOUCHED, "no other image changes: nothing is at risk"))
    return lines


def direction_line(plan: CommitPlan) -> str | None:
    """The advice for the whole selection in words, with both figures; None without one."""
    choice = advise(plan)
    if choice is None:
        return None
    commit, pull = human_bytes(choice.commit_bytes), human_bytes(choice.pull_bytes)
    risk = choice.commit_risk
    risk_text = "unknown bytes" if risk is None else human_bytes(risk)
    figures = f"commit copies {commit} and puts {risk_text} of other images at risk; " \
              f"pull copies {pull} and puts nothing at risk"  # fmt: skip
    if choice.reason == "unknown":
        return f"Pull advised: the allocation is not fully known ({figures})."
    if choice.reason == "nothing-at-risk":
        return f"Pull advised: the two copies are close, and a pull is always safe ({figures})."
    return f"{choice.operation.value.capitalize()} advised: it copies fewer bytes ({figures})."


def job_title(plan: CommitPlan) -> str:
    """What a running job is doing, for the progress panel's title."""
    name = os.path.basename
    if plan.operation is Operation.PULL:
        return f"Pulling into {name(plan.top)}"
    return f"Committing {name(plan.top)} into {name(plan.base)}"


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
    direction = direction_line(plan)
    lines = advice_lines(plan) if plan.operation is Operation.COMMIT else []
    lines += [direction] if direction else []
    return [text for _, text in effects(plan)] + lines + list(plan.notes)


def destructive_effects(plan: CommitPlan) -> list[str]:
    """The effects a confirmation must list: deletions, invalidations, siblings at risk."""
    name = os.path.basename
    effects = [f"Delete {name(p)}" for p in plan.deleted]
    if plan.operation is Operation.PULL:
        return effects
    effects += [f"Invalidate {name(a.image)}" for a in plan.invalid if a.image not in plan.deleted]
    effects += [
        f"{name(a.image)} reads {human_bytes(a.bytes)} of changed data"
        for a in plan.at_risk
        if a.bytes
    ]
    return effects
