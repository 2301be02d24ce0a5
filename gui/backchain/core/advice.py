"""Which direction to shorten a chain in: the one that copies fewer bytes, or, when the two are
close, the one that puts nothing at risk (SEMANTICS.md, "Pull versus commit")."""

from __future__ import annotations

from collections.abc import Sequence

from backchain.core.model import Affected, CommitPlan, Operation
from backchain.core.valueclass import valueclass

CLOSE_SHARE = 0.10
"""Two byte counts within 10 % of the larger one are "close": safety decides, not speed."""
CLOSE_FLOOR = 1 << 20
"""Below a MiB of difference the copy time does not matter either."""


@valueclass(frozen=True)
class Choice:
    """The advised direction for one selection, with both figures and the reason."""

    operation: Operation
    commit_bytes: int | None
    pull_bytes: int | None
    commit_risk: int | None
    """Bytes of other images a commit would change; None while unknown."""
    reason: str
    """``fewer-bytes``, ``nothing-at-risk`` or ``unknown``."""


def risk_bytes(at_risk: Sequence[Affected]) -> int | None:
    """The sum of the bytes at risk; None when any of them is unknown."""
    total = 0
    for item in at_risk:
        if item.bytes is None:
            return None
        total += item.bytes
    return total


def close(a: int, b: int) -> bool:
    """Whether two copies cost about the same."""
    return abs(a - b) <= max(CLOSE_FLOOR, int(CLOSE_SHARE * max(a, b)))


def advise(plan: CommitPlan) -> Choice | None:
    """The advised direction for the plan's selection; None without an alternative."""
    other = plan.alternative
    if other is None:
        return None
    if plan.operation is Operation.COMMIT:
        commit_bytes, pull_bytes = plan.bytes_to_copy, other.bytes_to_copy
        commit_risk = risk_bytes(plan.at_risk)
    else:
        commit_bytes, pull_bytes = other.bytes_to_copy, plan.bytes_to_copy
        commit_risk = risk_bytes(other.at_risk)
    if commit_bytes is None or pull_bytes is None:
        choice, reason = Operation.PULL, "unknown"
    elif close(commit_bytes, pull_bytes) and (commit_risk != 0 or commit_bytes == pull_bytes):
        choice, reason = Operation.PULL, "nothing-at-risk"
    elif commit_bytes < pull_bytes:
        choice, reason = Operation.COMMIT, "fewer-bytes"
    else:
        choice, reason = Operation.PULL, "fewer-bytes"
    return Choice(choice, commit_bytes, pull_bytes, commit_risk, reason)
