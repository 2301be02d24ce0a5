"""Both directions of one selection, planned for real: the figures the preview compares."""

from __future__ import annotations

import os.path
from collections.abc import Callable

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import Affected, CommitPlan, CommitRequest, Operation
from backchain.core.valueclass import replace, valueclass

Prepare = Callable[[ImageGraph, CommitRequest], CommitPlan]
"""The source's planner: the same call that makes the plan the worker runs."""


@valueclass(frozen=True)
class Side:
    """One direction: its real plan, or the planner's refusal."""

    operation: Operation
    request: CommitRequest | None
    plan: CommitPlan | None
    error: str | None
    deletable: tuple[str, ...] = ()
    """What DELETE removes (a commit's from the same request planned with DELETE)."""
    delete_refusal: str | None = None
    """Why the same commit with DELETE is refused, when it is."""


@valueclass(frozen=True)
class Sides:
    """The selected direction and the other one, for one graph."""

    selected: Operation
    commit: Side
    pull: Side
    graph: ImageGraph | None

    def side(self, operation: Operation) -> Side:
        """The side of ``operation``."""
        return self.pull if operation is Operation.PULL else self.commit


def _plan(prepare: Prepare, graph: ImageGraph, request: CommitRequest) -> CommitPlan | str:
    try:
        return prepare(graph, request)
    except PlanError as error:
        return error.summary


def plan_side(prepare: Prepare, graph: ImageGraph, request: CommitRequest) -> Side:
    """Plan ``request``; a commit is planned a second time with DELETE, for what it removes."""
    result = _plan(prepare, graph, request)
    if isinstance(result, str):
        return Side(request.operation, request, None, result)
    if result.operation is Operation.PULL or request.delete:
        deletable = result.deletable if result.operation is Operation.PULL else result.deleted
        return Side(result.operation, request, result, None, deletable)
    with_delete = _plan(prepare, graph, replace(request, delete=True))
    if isinstance(with_delete, str):
        return Side(Operation.COMMIT, request, result, None, (), with_delete)
    return Side(Operation.COMMIT, request, result, None, with_delete.deleted)


class DirectionPlanner:
    """Plans the selection in both directions and keeps the result, so that switching to the
    other direction shows, and then runs, the very plan object its column showed."""

    def __init__(self) -> None:
        self.sides: Sides | None = None

    def plan(
        self,
        prepare: Prepare,
        graph: ImageGraph,
        request: CommitRequest,
        counterpart: CommitRequest | None,
    ) -> Sides:
        """Both sides of the selection (the selected one is ``request``'s)."""
        selected = self._switched_to(graph, request) or plan_side(prepare, graph, request)
        if counterpart is None:
            other = Side(counterpart_operation(request.operation), None, None, "nothing selected")
        else:
            other = plan_side(prepare, graph, counterpart)
        pulling = request.operation is Operation.PULL
        commit, pull = (other, selected) if pulling else (selected, other)
        self.sides = Sides(request.operation, commit, pull, graph)
        return self.sides

    def clear(self) -> None:
        """Nothing is selected (no image open)."""
        self.sides = None

    def _switched_to(self, graph: ImageGraph, request: CommitRequest) -> Side | None:
        """The other column's side, when ``request`` is what it planned: a switch of direction.

        Only a switch reuses a plan. Any other change re-plans both sides, since a source's
        plan can depend on controls the request does not hold (libvirt's re-point).
        """
        sides = self.sides
        if sides is None or sides.graph is not graph or request.operation is sides.selected:
            return None
        other = sides.side(request.operation)
        return other if other.request == request else None


def counterpart_operation(operation: Operation) -> Operation:
    """Commit <-> pull."""
    return Operation.COMMIT if operation is Operation.PULL else Operation.PULL


@valueclass(frozen=True)
class Figures:
    """What one column shows, taken from its plan and nothing else."""

    bytes_to_copy: int | None
    exact: bool
    at_risk: tuple[Affected, ...]
    risk_bytes: int | None
    """The sum of the bytes at risk; None while any is unknown."""
    risk_exact: bool
    valid: tuple[str, ...]
    """The images the plan names that read the same afterwards (re-pointed ones included)."""
    stale: tuple[str, ...]
    invalid: tuple[str, ...]
    deletable: tuple[str, ...]
    deleted: tuple[str, ...]


def figures(side: Side) -> Figures | None:
    """The column's figures for a planned side; None for a refused one."""
    plan = side.plan
    if plan is None:
        return None
    risk: int | None = 0
    for item in plan.at_risk:
        risk = None if risk is None or item.bytes is None else risk + item.bytes
    if plan.operation is Operation.PULL:
        valid = (plan.top, *plan.merged)
    else:
        changing = {v.image for v in plan.view_changes if v.bytes != 0}
        hidden = [a.image for a in plan.at_risk if a.bytes == 0 and a.exact]
        valid = (plan.base, *(r.image for r in plan.rebased if r.image not in changing), *hidden)
    return Figures(
        bytes_to_copy=plan.bytes_to_copy,
        exact=plan.bytes_to_copy_exact,
        at_risk=tuple(a for a in plan.at_risk if a.bytes != 0 or not a.exact),
        risk_bytes=risk,
        risk_exact=all(a.exact for a in plan.at_risk),
        valid=valid,
        stale=tuple(p for p in plan.stale if p not in plan.deleted),
        invalid=tuple(a.image for a in plan.invalid if a.image not in plan.deleted),
        deletable=side.deletable,
        deleted=plan.deleted,
    )


def names(paths: tuple[str, ...] | list[str]) -> str:
    """File names, comma-separated."""
    return ", ".join(os.path.basename(p) for p in paths)
