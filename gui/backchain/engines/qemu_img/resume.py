"""Before an interrupted qemu-img job runs again: check that the files are where it left them."""

from __future__ import annotations

import os
from collections.abc import Sequence

from backchain.core.errors import ImageError, PlanError
from backchain.core.model import CommitPlan, Operation, StepKind
from backchain.engines.files.qcow2 import read_header
from backchain.engines.files.scan import resolve_backing, walk_headers


def check_resumable(plan: CommitPlan, done: int) -> None:
    """Refuse to run the rest of a job unless the disk is where the record left it.

    Locks are the engine's check_holders's: it checks what the job writes (a pull only reads
    base, which a VM on a sibling overlay may hold), and waits for holders that are ending.
    """
    remaining = plan.steps[done:]
    kinds = {s.kind for s in remaining}
    if plan.operation is Operation.PULL:
        _check_pull_chain(plan, kinds)
    elif kinds & {"commit", "verify"}:
        top_index = plan.chain.index(plan.top)
        expected = plan.chain[top_index : plan.chain.index(plan.base) + 1]
        try:
            found = tuple(layer.path for layer in walk_headers(plan.top))
        except ImageError as err:
            raise PlanError(f"cannot run the job again: {err}") from err
        if found[: len(expected)] != expected:
            raise PlanError(
                f"the chain below {plan.top} changed since the job stopped; "
                "dismiss the job and plan the commit again"
            )
    for rebase in plan.rebased:
        if not any(s.kind == "rebase" and s.target == rebase.image for s in remaining):
            continue
        try:
            header = read_header(rebase.image)
        except ImageError as err:
            raise PlanError(f"cannot run the job again: {err}") from err
        now = None
        if header.backing_name is not None:
            now = os.path.realpath(resolve_backing(rebase.image, header.backing_name))
        if now not in (os.path.realpath(plan.top), os.path.realpath(plan.base)):
            raise PlanError(
                f"{rebase.image} now has the backing file {header.backing_name!r}, neither "
                f"{plan.top} nor {plan.base}; dismiss the job and plan the commit again"
            )
    _check_nothing_new_depends(plan, [s.target for s in remaining if s.kind == "delete"])


def _check_pull_chain(plan: CommitPlan, kinds: set[StepKind]) -> None:
    """Top is on its old chain (the rebase did not end) or on the new one (it did)."""
    top_index = plan.chain.index(plan.top)
    old = plan.chain[top_index:]
    new = (plan.top, *plan.chain[plan.chain.index(plan.base) :]) if plan.base else (plan.top,)
    try:
        found = tuple(layer.path for layer in walk_headers(plan.top))
    except ImageError as err:
        raise PlanError(f"cannot run the job again: {err}") from err
    allowed = [new] if StepKind.PULL not in kinds else [old, new]
    if found not in allowed:
        raise PlanError(
            f"the chain below {plan.top} changed since the job stopped; "
            "dismiss the job and plan the pull again"
        )


def _check_nothing_new_depends(plan: CommitPlan, doomed: Sequence[str]) -> None:
    """A file created since the plan was made must not lose its backing file to a delete."""
    targets = {os.path.realpath(p) for p in doomed}
    if not targets:
        return
    for directory in {os.path.dirname(p) for p in targets}:
        try:
            entries = [e.path for e in os.scandir(directory) if e.is_file()]
        except OSError:
            continue
        for entry in entries:
            real = os.path.realpath(entry)
            if real in targets:
                continue
            try:
                header = read_header(real)
            except ImageError:
                continue
            if header.backing_name is None:
                continue
            backing = os.path.realpath(resolve_backing(entry, header.backing_name))
            if backing in targets and real not in {r.image for r in plan.rebased}:
                raise PlanError(f"cannot delete {backing}: {real} now depends on it")
