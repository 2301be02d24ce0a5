"""Executes a CommitPlan's steps, exactly as planned, with progress, cancel and clear failures."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from backchain.core.errors import CancelledError, EngineError, ImageError, PlanError
from backchain.core.model import CommitPlan, Step
from backchain.engines import base_lock, locks, qemu_img
from backchain.engines.journal import (
    JobRecord,
    Journal,
    JournalingSink,
    state_dir,
)
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.resume_check import check_resumable
from backchain.engines.scan import walk_headers

FAULT_PAUSE_ENV = "BACKCHAIN_FAULT_PAUSE"
"""Fault-injection seam for tests/faults: ``after:commit`` (or ``before:delete``, ...) makes the
runner stop at that step boundary, create the file $BACKCHAIN_FAULT_PAUSE_FILE (default
STATE_DIR/fault-paused) holding its pid, and wait until that file is removed."""
_paused: set[str] = set()


def run_plan(
    plan: CommitPlan, sink: ProgressSink, cancel: CancelToken, connection: object | None = None
) -> None:
    """Run ``plan`` with the engine it was made for; raise EngineError or CancelledError."""
    if plan.engine == "qmp":
        _run_online(plan, sink, cancel, connection)
        return
    if plan.engine == "libvirt":
        from backchain.engines import libvirt  # type: ignore[attr-defined,unused-ignore]

        libvirt.run_libvirt_plan(plan, sink, cancel, connection)
        return
    run_offline(plan, sink, cancel)


def _run_online(
    plan: CommitPlan,
    sink: ProgressSink,
    cancel: CancelToken,
    connection: object | None,
    journal: Journal | None = None,
) -> None:
    """A QMP job, journalled like an offline one, so that an interruption is reported."""
    from backchain.engines import qmp

    address = getattr(connection, "address", connection)
    journal = journal or Journal.create(plan, connection=str(address))
    try:
        qmp.run_qmp_plan(plan, JournalingSink(sink, journal), cancel, connection)
    except CancelledError:
        # A cancelled block-commit leaves the chain as it was: there is nothing to finish.
        journal.remove()
        raise
    except EngineError as err:
        journal.failed(err.message)
        raise
    journal.remove()


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
    _check_directories(plan, plan.steps)


def _check_directories(plan: CommitPlan, steps: Sequence[Step]) -> None:
    """Rebase writes a new header in place, delete unlinks: both need what the step targets."""
    for step in steps:
        if step.kind == "rebase" and not locks.is_writable(step.target):
            raise PlanError(f"{step.target} is not writable, so it cannot be re-pointed")
        if step.kind == "delete":
            directory = os.path.dirname(step.target)
            if not _directory_writable(directory):
                raise PlanError(f"{step.target} cannot be deleted: its directory {directory} "
                                "is read-only")  # fmt: skip


def _directory_writable(directory: str) -> bool:
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    # access() reports an immutable directory (chattr +i) even to root.
    return not read_only and os.access(directory, os.W_OK | os.X_OK)


def _locked_images(plan: CommitPlan) -> list[str]:
    return [plan.base, *plan.merged, *(r.image for r in plan.rebased)]


def _purpose(plan: CommitPlan) -> str:
    name = os.path.basename
    return f"a commit of {name(plan.top)} into {name(plan.base)}"


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
    """Run a qemu-img plan: commit, re-point each overlay, verify, delete, in that order.

    The images are locked against a second Backchain, and the job is journalled before the
    first write, so that an interruption can be explained and completed (see resume_job).
    """
    if plan.engine != "qemu-img":
        raise EngineError(f"the offline runner cannot run a plan for {plan.engine}")
    with base_lock.holding(_locked_images(plan), _purpose(plan)):
        preflight(plan)
        journal = Journal.create(plan)
        _execute(plan, 0, JournalingSink(sink, journal), cancel, journal)


def resume_job(record: JobRecord, sink: ProgressSink, cancel: CancelToken) -> None:
    """Run the steps of an interrupted job that did not complete, once the disk checks out.

    Every offline step is idempotent (commit -b rewrites the same data, rebase -u writes the
    same name, rm -f of a removed file succeeds), so re-running the step that was cut off is safe.
    """
    plan = record.plan
    if plan.engine == "qmp":
        # QEMU still runs a job whose client vanished; the QMP engine takes it over, or starts
        # the same block-commit again on the same socket.
        check_resumable(record)
        address = record.document.get("connection")
        _run_online(plan, sink, cancel, str(address), Journal.reopen(record))
        return
    with base_lock.holding(_locked_images(plan), _purpose(plan)):
        check_resumable(record)
        remaining = plan.steps[record.done :]
        if any(s.kind == "commit" for s in remaining) and not locks.is_writable(plan.base):
            raise PlanError(f"{plan.base} is not writable, so the commit cannot change it")
        _check_directories(plan, remaining)
        journal = Journal.reopen(record)
        _execute(plan, record.done, JournalingSink(sink, journal), cancel, journal)


def _execute(
    plan: CommitPlan, first: int, sink: ProgressSink, cancel: CancelToken, journal: Journal
) -> None:
    sink.started(plan)
    total = plan.bytes_to_copy or 0
    done: list[Step] = list(plan.steps[:first])
    current: Step | None = None
    try:
        for index in range(first, len(plan.steps)):
            current = plan.steps[index]
            _fault_pause("before", current)
            if cancel.cancelled:
                raise CancelledError("cancelled before " + current.kind)
            journal.step_started(index)
            _run_step(plan, current, sink, cancel, total, done)
            journal.step_done(index)
            done.append(current)
            _fault_pause("after", current)
        current = None
    except EngineError as err:
        err.state = describe_state(plan, done, current)
        journal.failed(err.message)
        sink.finished(False, f"{err.message}\n{err.state}")
        raise
    journal.remove()
    sink.finished(True, _finished_message(plan))


def _fault_pause(when: str, step: Step) -> None:
    """The test seam FAULT_PAUSE_ENV documents; it does nothing unless that variable is set."""
    spec = f"{when}:{step.kind}"
    if os.environ.get(FAULT_PAUSE_ENV) != spec or spec in _paused:
        return
    _paused.add(spec)
    marker = os.environ.get("BACKCHAIN_FAULT_PAUSE_FILE") or os.path.join(
        state_dir(), "fault-paused"
    )
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()} {spec}\n")
    while os.path.exists(marker):
        time.sleep(0.02)


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
            raise _naming(plan, step, err) from err
        sink.advanced(scale, scale, step.kind)
        return
    try:
        qemu_img.run(step.argv, cwd=step.cwd)
    except EngineError as err:
        raise _naming(plan, step, err) from err
    count = sum(1 for s in plan.steps if s.kind == step.kind)
    index = sum(1 for s in done if s.kind == step.kind) + 1
    sink.advanced(index, count, step.kind)


def _naming(plan: CommitPlan, step: Step, err: EngineError) -> EngineError:
    """The same failure, with a message that names the files the step was working on."""
    name = os.path.basename
    doing = {
        "commit": f"committing {name(plan.top)} into {name(plan.base)}",
        "rebase": f"re-pointing {name(step.target)} to {name(plan.base)}",
        "verify": f"comparing {name(plan.top)} with {name(plan.base)}",
        "delete": f"deleting {name(step.target)}",
    }.get(step.kind, f"{step.kind} of {name(step.target)}")
    cause = err.message.removeprefix("qemu-img: ")
    if err.returncode is not None and err.returncode < 0:
        cause = f"{os.path.basename(err.argv[0]) if err.argv else 'the command'} was killed by " \
                f"signal {-err.returncode}"  # fmt: skip
    return EngineError(f"{doing} failed: {cause}", argv=err.argv, returncode=err.returncode,
                       stderr=err.stderr)  # fmt: skip
