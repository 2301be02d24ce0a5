"""The one lifecycle of every job, for every engine: locks, preflight, journal, steps, outcome."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from backchain.core.describe import finished_message
from backchain.core.errors import CancelledError, EngineError
from backchain.core.model import CommitPlan, EngineKind, Operation, Step
from backchain.engines import image_locks, ledger
from backchain.engines.base import Engine, ImageTarget, LiveControl, QmpTarget, Target
from backchain.engines.journal import JobRecord, Journal, JournalingSink
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.registry import engine_for
from backchain.engines.state import state_dir

FAULT_PAUSE_ENV = "BACKCHAIN_FAULT_PAUSE"
"""Fault-injection seam for tests/faults: ``after:commit`` (or ``before:delete``, ...) makes the
runner stop at that step boundary, create the file $BACKCHAIN_FAULT_PAUSE_FILE (default
STATE_DIR/fault-paused) holding its pid, and wait until that file is removed."""
_paused: set[str] = set()

NOTHING_WRITTEN = "Nothing was written: every file is as it was before the job started."


def target_for(plan: CommitPlan, connection: object | None) -> Target:
    """The typed target of a plan; a bare socket address or a live control is accepted too."""
    if isinstance(connection, (ImageTarget, QmpTarget)):
        return connection
    if connection is None and plan.engine is EngineKind.QEMU_IMG:
        return ImageTarget(plan.image)
    if isinstance(connection, str) and plan.engine is EngineKind.QMP:
        return QmpTarget(connection)
    address = getattr(connection, "address", None)
    if isinstance(connection, LiveControl) and isinstance(address, str):
        return QmpTarget(address, timeout=float(getattr(connection, "timeout", 15.0)),
                         control=connection,
                         close_wait=float(getattr(connection, "close_wait", 10.0)))  # fmt: skip
    from backchain.engines.base import LibvirtTarget

    if isinstance(connection, LibvirtTarget):
        return connection
    raise EngineError(f"a {plan.engine.value} plan cannot run without its connection")


def run_plan(
    plan: CommitPlan, sink: ProgressSink, cancel: CancelToken, connection: object | None = None
) -> None:
    """Run ``plan`` exactly as planned; raise EngineError (CancelledError when cancelled)."""
    engine = engine_for(plan.engine)
    target = target_for(plan, connection)
    with image_locks.holding(engine.written(plan), _purpose(plan)) as locks:
        engine.preflight(plan, target)
        journal = Journal.create(plan, target)
        locks.annotate(journal.job_id)
        _execute(engine, plan, target, 0, JournalingSink(sink, journal), cancel, journal)


def resume_job(record: JobRecord, sink: ProgressSink, cancel: CancelToken) -> None:
    """Run the steps of an interrupted job that did not complete, once its files check out.

    Offline steps are idempotent (commit -b rewrites the same data, rebase -u writes the same
    name, rm -f of a removed file succeeds); online engines take over a job QEMU or libvirt kept.
    """
    plan = record.plan
    engine = engine_for(plan.engine)
    with image_locks.holding(engine.written(plan), _purpose(plan)) as locks:
        engine.resume_check(plan, record.done, record.target)
        journal = Journal.reopen(record)
        locks.annotate(journal.job_id)
        sink = JournalingSink(sink, journal)
        _execute(engine, plan, record.target, record.done, sink, cancel, journal)


def _purpose(plan: CommitPlan) -> str:
    name = os.path.basename
    if plan.operation is Operation.PULL:
        return f"a pull into {name(plan.top)}"
    return f"a {plan.operation.value} of {name(plan.top)} into {name(plan.base)}"


def _fingerprint(paths: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """What a write changes: each file's size and mtime (None once it is gone).

    Not ctime: a change of permissions or flags (chmod, chattr) writes no data.
    """
    prints: dict[str, tuple[int, int] | None] = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            prints[path] = None
            continue
        prints[path] = (info.st_size, info.st_mtime_ns)
    return prints


def _execute(
    engine: Engine,
    plan: CommitPlan,
    target: Target,
    first: int,
    sink: JournalingSink,
    cancel: CancelToken,
    journal: Journal,
) -> None:
    written = list(engine.written(plan))
    before = _fingerprint(written)
    done: list[Step] = list(plan.steps[:first])
    current: Step | None = None
    sink.started(plan)
    try:
        with engine.session(plan, target) as session:
            for index in range(first, len(plan.steps)):
                current = plan.steps[index]
                _fault_pause("before", current)
                if cancel.cancelled:
                    raise CancelledError(f"cancelled before {current.kind.value}")
                journal.step_started(index)
                sink.step_started(current)
                sink.logged("$ " + current.as_shell())
                session.run_step(index, current, sink, cancel)
                journal.step_done(index)
                done.append(current)
                _fault_pause("after", current)
            current = None
            outcome = session.outcome
    except EngineError as err:
        _failed(engine, plan, err, first, done, current, before, journal)
        sink.finished(False, f"{err.message}\n{err.state}")
        raise
    journal.remove()
    _remember(plan)
    sink.finished(True, outcome or finished_message(plan))


def _failed(
    engine: Engine,
    plan: CommitPlan,
    err: EngineError,
    first: int,
    done: Sequence[Step],
    current: Step | None,
    before: dict[str, tuple[int, int] | None],
    journal: Journal,
) -> None:
    """Word the state of the files, and keep the record only if something was written."""
    untouched = first == 0 and len(done) == 0 and _fingerprint(list(before)) == before
    if untouched:
        err.state = NOTHING_WRITTEN
        journal.remove()
        return
    if not err.state:
        err.state = engine.state_after(plan, done, current)
    if isinstance(err, CancelledError) and not engine.keeps_cancelled_record:
        journal.remove()
        return
    journal.failed(err.message)


def _remember(plan: CommitPlan) -> None:
    """Keep in the ledger what the finished commit left invalid, stale or at risk."""
    if plan.operation is not Operation.COMMIT:
        return
    try:
        ledger.record(plan)
    except OSError:
        # The job succeeded; a ledger that cannot be written only loses the after-the-fact marks.
        pass


def _fault_pause(when: str, step: Step) -> None:
    """The test seam FAULT_PAUSE_ENV documents; it does nothing unless that variable is set."""
    spec = f"{when}:{step.kind.value}"
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
