"""Executes a CommitPlan's steps, exactly as planned, with progress, cancel and clear failures."""

from __future__ import annotations

import os
from collections.abc import Sequence

from backchain.core.errors import CancelledError, EngineError, ImageError, PlanError
from backchain.core.model import CommitPlan, Step
from backchain.engines import locks, qemu_img
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.scan import walk_headers


def run_plan(
    plan: CommitPlan, sink: ProgressSink, cancel: CancelToken, connection: object | None = None
) -> None:
    """Run ``plan`` with the engine it was made for; raise EngineError or CancelledError."""
    if plan.engine == "qmp":
        from backchain.engines import qmp

        qmp.run_qmp_plan(plan, sink, cancel, connection)
        return
    if plan.engine == "libvirt":
        from backchain.engines import libvirt  # type: ignore[attr-defined,unused-ignore]

        libvirt.run_libvirt_plan(plan, sink, cancel, connection)
        return
    run_offline(plan, sink, cancel)


def preflight(plan: CommitPlan) -> None:
    """Check, just before the first write, that the disk still matches the plan."""
    try:
        chain = [layer.path for layer in walk_headers(plan.image)]
    except ImageError as err:
        raise PlanError(f"cannot start: {err}") from err
    if tuple(chain) != plan.chain:
        raise PlanError(
            f"the chain of {plan.image} changed since the plan was made; open it again "
            "and review the new plan"
        )
    written = [plan.base, *(r.image for r in plan.rebased)]
    for path in [*written, *plan.merged]:
        holder = locks.lock_holder(path)
        if holder is not None:
            who = f"process {holder}" if holder > 0 else "another process"
            raise PlanError(
                f"{path} is in use by a running QEMU ({who} holds its lock). "
                "Stop the VM, or commit online."
            )
    for path in written:
        if not locks.is_writable(path):
            raise PlanError(f"{path} is not writable, so the commit cannot change it")
    free = locks.free_bytes(plan.base)
    if plan.bytes_to_copy is not None and free is not None and plan.bytes_to_copy > free:
        raise PlanError(
            f"not enough free space for {plan.base} to grow: "
            f"{plan.bytes_to_copy} bytes to copy, {free} bytes free"
        )
    for rebase in plan.rebased:
        if not os.access(os.path.dirname(rebase.image), os.W_OK | os.X_OK):
            raise PlanError(f"the directory of {rebase.image} cannot be written")


def describe_state(plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
    """Where every file stands after the steps in ``done`` (and perhaps a part of ``failed``)."""
    name = os.path.basename
    kinds = {step.kind for step in done}
    overlays = ", ".join(name(r.image) for r in plan.rebased) or "nothing"
    lines = []
    if "commit" not in kinds:
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
    rebased = {s.target for s in done if s.kind == "rebase"}
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
    deleted = [s.target for s in done if s.kind == "delete"]
    kept = [p for p in plan.deleted if p not in deleted]
    if deleted:
        lines.append("Deleted: " + ", ".join(map(name, deleted)))
    if kept:
        lines.append("Not deleted: " + ", ".join(map(name, kept)))
    if failed is not None and failed.kind == "verify":
        lines.append("Nothing was deleted, because the verification did not pass.")
    return "\n".join(lines)


def _finished_message(plan: CommitPlan) -> str:
    name = os.path.basename
    text = f"Committed {name(plan.top)} into {name(plan.base)}."
    if plan.rebased:
        text += " Re-pointed " + ", ".join(name(r.image) for r in plan.rebased) + "."
    if plan.deleted:
        text += " Deleted " + ", ".join(name(p) for p in plan.deleted) + "."
    return text


def run_offline(plan: CommitPlan, sink: ProgressSink, cancel: CancelToken) -> None:
    """Run a qemu-img plan: commit, re-point each overlay, verify, delete, in that order."""
    if plan.engine != "qemu-img":
        raise EngineError(f"the offline runner cannot run a plan for {plan.engine}")
    preflight(plan)
    sink.started(plan)
    total = plan.bytes_to_copy or 0
    done: list[Step] = []
    current: Step | None = None
    try:
        for current in plan.steps:
            if cancel.cancelled:
                raise CancelledError("cancelled before " + current.kind)
            _run_step(plan, current, sink, cancel, total, done)
            done.append(current)
        current = None
    except EngineError as err:
        err.state = describe_state(plan, done, current)
        sink.finished(False, f"{err.message}\n{err.state}")
        raise
    sink.finished(True, _finished_message(plan))


def _run_step(
    plan: CommitPlan,
    step: Step,
    sink: ProgressSink,
    cancel: CancelToken,
    total: int,
    done: Sequence[Step],
) -> None:
    sink.step_started(step)
    sink.logged("$ " + step.as_shell())
    scale = total if step.kind == "commit" and total else 100

    def on_fraction(fraction: float) -> None:
        sink.advanced(int(fraction * scale), scale, step.kind)

    if step.kind in ("commit", "verify"):
        try:
            qemu_img.run_streaming(
                step.argv,
                cwd=step.cwd,
                on_fraction=on_fraction,
                on_text=sink.logged,
                cancelled=lambda: cancel.cancelled,
            )
        except CancelledError:
            raise
        except EngineError as err:
            if step.kind == "verify" and err.returncode == 1:
                raise EngineError(
                    f"{os.path.basename(plan.top)} and {os.path.basename(plan.base)} differ "
                    "after the commit, so nothing was deleted",
                    argv=err.argv, returncode=err.returncode, stderr=err.stderr,
                ) from err  # fmt: skip
            raise
        sink.advanced(scale, scale, step.kind)
        return
    qemu_img.run(step.argv, cwd=step.cwd)
    count = sum(1 for s in plan.steps if s.kind == step.kind)
    index = sum(1 for s in done if s.kind == step.kind) + 1
    sink.advanced(index, count, step.kind)
