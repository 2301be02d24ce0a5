"""The journal's plan codec is lossless: every field of a plan and its request comes back."""

from __future__ import annotations

import json

import pytest

from backchain.core import valueclass
from backchain.core.codec import decode, encode, plan_from_record, plan_to_record
from backchain.core.model import (
    Advice,
    Affected,
    Alternative,
    CommitPlan,
    CommitRequest,
    EngineKind,
    Lost,
    LostKind,
    OnReady,
    Operation,
    Rebase,
    SnapshotView,
    Step,
    StepKind,
)


def full_request() -> CommitRequest:
    return CommitRequest(
        image="/vm/active.qcow2", top="/vm/snap2.qcow2", base="/vm/base.qcow2", shallow=True,
        delete=True, keep_relative=True, active=True, rate=4096, verify=False,
        on_ready=OnReady.KEEP_OVERLAY, engine=EngineKind.QMP, operation=Operation.PULL,
    )  # fmt: skip


def full_plan() -> CommitPlan:
    steps = (
        Step(
            StepKind.BLOCK_COMMIT,
            call={"execute": "block-commit", "arguments": {"job-id": "j", "speed": 7}},
            target="/vm/base.qcow2",
        ),
        Step(StepKind.REBASE, ("qemu-img", "rebase", "-u"), cwd="/vm", target="/vm/a.qcow2"),
    )
    return CommitPlan(
        request=full_request(), engine=EngineKind.QMP, image="/vm/active.qcow2",
        chain=("/vm/active.qcow2", "/vm/snap2.qcow2", "/vm/base.qcow2"),
        top="/vm/snap2.qcow2", base="/vm/base.qcow2", merged=("/vm/snap2.qcow2",),
        invalid=(Affected("/vm/snap1.qcow2", 5),), stale=("/vm/snap2.qcow2",),
        rebased=(Rebase("/vm/active.qcow2", "/vm/base.qcow2", "base.qcow2"),),
        at_risk=(Affected("/vm/other.qcow2", None),
                 Affected("/vm/clone.qcow2", 7, exact=False,
                          snapshots=(SnapshotView("s1", 3, exact=False),))),
        deleted=("/vm/snap2.qcow2",),
        bytes_to_copy=123, advice=(Advice("/vm/snap2.qcow2", 10, 100, 10, 90),), steps=steps,
        active_commit=True, notes=("a note",), operation=Operation.PULL,
        view_changes=(Affected("/vm/active.qcow2", 9),),
        lost=(Lost("/vm/snap2.qcow2", LostKind.BITMAP, "inc0"),
              Lost("/vm/snap2.qcow2", LostKind.INTERNAL_SNAPSHOT, "old")),
        base_grows_to=1 << 30, bytes_to_copy_exact=False, scanned=("/vm", "/other"),
        alternative=Alternative(Operation.COMMIT, "/vm/snap2.qcow2", "/vm/base.qcow2", 11,
                                (Affected("/vm/other.qcow2", 2),)),
        deletable=("/vm/snap1.qcow2",), live=True,
    )  # fmt: skip


def test_every_field_of_the_fixture_differs_from_its_default() -> None:
    """So that a field added to the model must be added here, and so is round-tripped."""
    for obj in (full_request(), full_plan()):
        for field in valueclass.fields(obj):
            if field.default is valueclass.MISSING:
                continue
            assert getattr(obj, field.name) != field.default, f"{type(obj).__name__}.{field.name}"


def test_a_plan_survives_json_exactly() -> None:
    plan = full_plan()
    text = json.dumps(plan_to_record(plan))
    again = plan_from_record(json.loads(text))
    assert again == plan
    assert again.request.on_ready is OnReady.KEEP_OVERLAY
    assert again.steps[0].kind is StepKind.BLOCK_COMMIT and again.engine is EngineKind.QMP
    assert again.lost[0].kind is LostKind.BITMAP and not again.at_risk[1].snapshots[0].exact


def test_a_request_survives_json_exactly() -> None:
    request = full_request()
    assert decode(CommitRequest, json.loads(json.dumps(encode(request)))) == request


def test_a_record_of_another_shape_is_refused() -> None:
    broken = plan_to_record(full_plan())
    broken["plan"]["bytes_to_copy"] = "lots"
    with pytest.raises((TypeError, ValueError)):
        plan_from_record(broken)
