"""Plain-language wording of a plan, shared by the CLI and the window so both say the same."""

from __future__ import annotations

import os.path
import time

from backchain.core.advice import advise
from backchain.core.graph import Layer
from backchain.core.model import Affected, CommitPlan, LostKind, Operation, Role


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


def amount(count: int | None, exact: bool = True) -> str:
    """A size, prefixed with "at least" when it is a lower bound."""
    return human_bytes(count) if exact else f"at least {human_bytes(count)}"


def _snapshots(item: Affected) -> str:
    changed = [s for s in item.snapshots if s.bytes]
    if not changed:
        return ""
    parts = ", ".join(f"'{s.name}' {amount(s.bytes, s.exact)}" for s in changed)
    return f"; its internal snapshots change too: {parts}"


def _at_risk(item: Affected, base: str) -> str:
    name = os.path.basename(item.image)
    if item.bytes == 0 and item.exact:
        text = f"{name}: hides every changed byte of {base}; 0 B at risk"
    elif item.bytes == 0:
        text = f"{name}: at least 0 B would read changed data from {base}"
    else:
        text = f"{name}: {amount(item.bytes, item.exact)} would read changed data from {base}"
    return text + _snapshots(item)


def lost_lines(plan: CommitPlan) -> list[str]:
    """What DELETE destroys besides the files' data, one line each."""
    words = {LostKind.INTERNAL_SNAPSHOT: "internal snapshot", LostKind.BITMAP: "dirty bitmap"}
    return [f"{os.path.basename(x.image)}: its {words[x.kind]} '{x.name}' is lost with it"
            for x in plan.lost]  # fmt: skip


def view_change_lines(plan: CommitPlan) -> list[str]:
    """Top's overlays whose guest-visible content changes (a size mismatch), and top's internal
    snapshots that read the changed base, one line each."""
    base, top = os.path.basename(plan.base), os.path.basename(plan.top)
    lines = []
    for view in plan.view_changes:
        name = os.path.basename(view.image)
        if view.bytes == 0 and view.exact:
            lines.append(f"{name}: its view stays{_snapshots(view)}")
            continue
        lines.append(
            f"{name}: its view changes by {amount(view.bytes, view.exact)} (it will read "
            f"{base}'s data where {top} is shorter){_snapshots(view)}"
        )
    return lines


def effects(plan: CommitPlan) -> list[tuple[Role, str]]:
    """Every effect on an image, one sentence each, tagged with the preview's role."""
    if plan.operation is Operation.PULL:
        return pull_effects(plan)
    name = os.path.basename
    base = name(plan.base)
    merged = ", ".join(name(p) for p in plan.merged)
    lines: list[tuple[Role, str]] = [
        (
            Role.BASE,
            f"{base}: receives {amount(plan.bytes_to_copy, plan.bytes_to_copy_exact)} "
            f"from {merged}",
        )
    ]
    if plan.base_grows_to is not None:
        lines.append((Role.BASE, f"{base}: grows to {human_bytes(plan.base_grows_to)}"))
    for item in plan.invalid:
        size = "an unknown amount" if item.bytes is None else amount(item.bytes, item.exact)
        lines.append((Role.INVALID, f"{name(item.image)}: invalid now; {size} of its view "
                      f"changes{_snapshots(item)}"))  # fmt: skip
    for path in plan.stale:
        if plan.active_commit and _runs_a_live_job(plan):
            text = f"{name(path)}: stays valid until the job pivots to {base}"
        else:
            text = f"{name(path)}: reads correctly until {base} is written again, then stale"
        lines.append((Role.STALE, text))
    changing = {v.image for v in plan.view_changes}
    for rebase in plan.rebased:
        text = f"{name(rebase.image)}: re-pointed to {base} (backing name '{rebase.backing_name}')"
        if rebase.image not in changing:
            text += ", stays valid"
        lines.append((Role.REBASED, text))
    lines += [(Role.REBASED, text) for text in view_change_lines(plan)]
    for item in plan.at_risk:
        if item.bytes is None:
            text = f"{name(item.image)}: may read changed data from {base} (allocation unknown)"
        else:
            text = _at_risk(item, base)
        lines.append((Role.AT_RISK, text))
    for path in plan.deleted:
        lines.append((Role.DELETED, f"{name(path)}: deleted after the commit succeeds"))
    lines += [(Role.DELETED, text) for text in lost_lines(plan)]
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
    return plan.live


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
    # The layer-by-layer rule of thumb answers another question (each layer on its own) and
    # can contradict the selection's advice, so it is given only when that advice is missing.
    lines = (
        [direction]
        if direction
        else (advice_lines(plan) if plan.operation is Operation.COMMIT else [])
    )
    return [text for _, text in effects(plan)] + lines + list(plan.notes)


def destructive_effects(plan: CommitPlan) -> list[str]:
    """The effects a confirmation must list: deletions, invalidations, siblings at risk."""
    name = os.path.basename
    effects = [f"Delete {name(p)}" for p in plan.deleted]
    if plan.operation is Operation.PULL:
        return effects
    effects += [f"Invalidate {name(a.image)}" for a in plan.invalid if a.image not in plan.deleted]
    effects += [
        f"{name(a.image)} reads {amount(a.bytes, a.exact)} of changed data"
        for a in plan.at_risk
        if a.bytes or not a.exact
    ]
    effects += [f"{name(v.image)}'s view changes by {amount(v.bytes, v.exact)}"
                for v in plan.view_changes]  # fmt: skip
    effects += lost_lines(plan)
    return effects


def finished_message(plan: CommitPlan) -> str:
    """The one sentence that says what a successful job did."""
    name = os.path.basename
    if plan.operation is Operation.PULL:
        where = f"it now stays on {name(plan.base)}" if plan.base else "it is now standalone"
        text = f"Pulled {', '.join(name(p) for p in plan.merged)} into {name(plan.top)}; {where}."
        if plan.deleted:
            text += " Deleted " + ", ".join(name(p) for p in plan.deleted) + "."
        return text
    text = f"Committed {name(plan.top)} into {name(plan.base)}."
    if plan.rebased:
        text += " Re-pointed " + ", ".join(name(r.image) for r in plan.rebased) + "."
    if plan.deleted:
        text += " Deleted " + ", ".join(name(p) for p in plan.deleted) + "."
    return text


def snapshot_stamp(name: str, created: int) -> str:
    """``s2 · 2026-12-01 19:33`` (local time), as the CLI and the cards name a snapshot."""
    return f"{name} · {time.strftime('%Y-%m-%d %H:%M', time.localtime(created))}"


def named_snapshot_lines(layer: Layer) -> list[str]:
    """``s2 · 2026-12-01 19:33 (created)`` for each snapshot outside the image that names it."""
    return [f"{snapshot_stamp(s.name, s.created)} ({s.role})" for s in layer.named_by]


def internal_snapshots_text(layer: Layer) -> str:
    """``2 internal snapshots: a, b`` from the qcow2 snapshot table, or nothing."""
    names = [s.name for s in layer.snapshots]
    if not names:
        return ""
    return f"{len(names)} internal snapshot{'' if len(names) == 1 else 's'}: {', '.join(names)}"
