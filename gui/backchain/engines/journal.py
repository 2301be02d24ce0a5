"""The operation journal: a record of each running commit, so that an interrupted one can be found,
explained, and completed (or dismissed) on the next start."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping

from backchain.core.codec import plan_from_record, plan_to_record
from backchain.core.errors import BackchainError
from backchain.core.model import CommitPlan, OnReady, Operation, Step, StepKind
from backchain.core.static_typing import TYPE_CHECKING
from backchain.core.valueclass import valueclass
from backchain.engines.base import Target, target_from_record, target_to_record
from backchain.engines.image_locks import holder_of
from backchain.engines.progress import ProgressSink
from backchain.engines.state import STATE_ENV, process_alive, process_start_time, state_dir

if TYPE_CHECKING:
    from typing import Any

__all__ = ["STATE_ENV", "JobRecord", "Journal", "JournalingSink", "state_dir"]
FORMAT_VERSION = 2
PROGRESS_INTERVAL = 0.1
"""Seconds between two progress writes of a record (step boundaries are always written)."""


def jobs_dir() -> str:
    """The directory that holds one JSON record per unfinished job."""
    return os.path.join(state_dir(), "jobs")


def _write_atomic(path: str, document: Mapping[str, Any], durable: bool) -> None:
    """Replace ``path`` in one step, so that a crash leaves the old record or the new one."""
    temporary = f"{path}.{os.getpid()}.tmp"
    text = json.dumps(document, indent=1)  # one write: json.dump writes chunk by chunk
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    if durable:
        fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Journal:
    """The live record of one job; every method runs in the thread that runs the job."""

    def __init__(self, path: str, document: dict[str, Any]) -> None:
        self.path = path
        self.document = document
        self._last_percent = -1
        self._last_write = 0.0
        self._durable_done = 0
        """The ``done`` of the last record that reached the disk durably."""

    @classmethod
    def create(cls, plan: CommitPlan, target: Target) -> Journal:
        """Record ``plan`` before anything is written; raise BackchainError if that fails.

        ``target`` says where the job runs (the files, a QMP socket, a libvirt disk), so that an
        interrupted job can be re-run against the same thing.
        """
        directory = jobs_dir()
        # os.urandom, not the secrets module: that one imports hashlib and hmac (20 ms).
        job_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{os.urandom(2).hex()}"
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "id": job_id,
            "started": time.time(),
            "updated": time.time(),
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "argv": list(sys.argv),
            "plan": plan.to_json(),
            "record": plan_to_record(plan),
            "target": target_to_record(target),
            "done": 0,
            "current": None,
            "fraction": 0.0,
            "error": None,
            "connection": target.describe(),
        }
        journal = cls(os.path.join(directory, job_id + ".json"), document)
        try:
            os.makedirs(directory, exist_ok=True)
            journal._save(durable=True)
        except OSError as err:
            raise BackchainError(
                f"cannot record the job in {directory} ({err.strerror or err}), so it is not "
                "started: without a record an interruption could not be explained"
            ) from err
        return journal

    @property
    def job_id(self) -> str:
        """The record's id."""
        return str(self.document["id"])

    @classmethod
    def reopen(cls, record: JobRecord) -> Journal:
        """Continue writing an existing record (when the job is run again)."""
        document = dict(record.document)
        document.update(pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                        argv=list(sys.argv), error=None, resumed=time.time())  # fmt: skip
        journal = cls(record.path, document)
        journal._save(durable=True)
        return journal

    def _save(self, durable: bool = False) -> None:
        self.document["updated"] = time.time()
        _write_atomic(self.path, self.document, durable)
        if durable:
            self._durable_done = int(self.document.get("done", 0))

    def _try_save(self, durable: bool = False) -> None:
        # A journal that cannot be updated must not break a commit that is already running;
        # the record still names the job and its last known step.
        with contextlib.suppress(OSError):
            self._save(durable)

    def step_started(self, index: int) -> None:
        """Step ``index`` of the plan begins: durably recorded before it writes anything.

        Unless the disk already holds a record with a step done: every reader (describe(),
        percent(), resume, the window) then goes by ``done`` alone, and ``current`` and
        ``fraction`` only matter while nothing is done. The new step's start stays in memory
        and goes out with the next write; a crash meanwhile leaves a record that reads the
        same. That saves a write and its two fsyncs between two steps.
        """
        self.document["current"] = index
        self.document["fraction"] = 0.0
        self._last_percent = 0
        if self._durable_done == 0:
            self._try_save(durable=True)
        self._last_write = time.monotonic()

    def progressed(self, fraction: float) -> None:
        """The current step is ``fraction`` done (written at most once per percent).

        At most every PROGRESS_INTERVAL seconds, too: a fast commit reports a percent every
        few milliseconds, and each write of the record costs about 2 ms.
        """
        percent = int(fraction * 100)
        self.document["fraction"] = fraction
        now = time.monotonic()
        if now - self._last_write < PROGRESS_INTERVAL:
            return
        if percent != self._last_percent or now - self._last_write > 1.0:
            self._last_percent = percent
            self._last_write = now
            self._try_save()

    def step_done(self, index: int) -> None:
        """Step ``index`` completed: a re-run starts after it."""
        self.document["done"] = index + 1
        self.document["current"] = None
        self.document["fraction"] = 1.0
        self._try_save(durable=True)

    def failed(self, message: str) -> None:
        """The job stopped with an error; the record stays, with the reason."""
        self.document["error"] = message
        self._try_save(durable=True)

    def remove(self) -> None:
        """The job ended with nothing left to do: forget it, and older runs of the same plan."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        # This process holds the images' locks, so no other job on them can be running now.
        mine = self.document["record"]["plan"]["steps"]
        shown = self.document["plan"]
        receiver = shown["top"] if shown.get("operation") == "pull" else shown["base"]
        for record in unfinished_jobs([receiver]):
            if record.document.get("record", {}).get("plan", {}).get("steps") == mine:
                dismiss(record)


class JournalingSink:
    """Passes every event on to another sink and records the progress in the journal."""

    def __init__(self, inner: ProgressSink, journal: Journal) -> None:
        self.inner = inner
        self.journal = journal

    def started(self, plan: CommitPlan) -> None:
        """Forward."""
        self.inner.started(plan)

    def step_started(self, step: Step) -> None:
        """Forward."""
        self.inner.step_started(step)

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Forward, and keep the fraction of the current step in the record."""
        if total > 0:
            self.journal.progressed(min(1.0, done / total))
        self.inner.advanced(done, total, phase)

    def logged(self, text: str) -> None:
        """Forward."""
        self.inner.logged(text)

    def ready(self) -> OnReady:
        """Forward."""
        return self.inner.ready()

    def finished(self, ok: bool, message: str) -> None:
        """Forward."""
        self.inner.finished(ok, message)


@valueclass(frozen=True)
class JobRecord:
    """An unfinished job as read back from the journal."""

    path: str
    document: Mapping[str, Any]
    plan: CommitPlan
    target: Target

    @property
    def id(self) -> str:
        """The record's id (its file name without .json)."""
        return str(self.document["id"])

    @property
    def done(self) -> int:
        """How many of the plan's steps completed."""
        return int(self.document.get("done", 0))

    @property
    def current(self) -> int | None:
        """The step that was running when the job stopped, if any."""
        value = self.document.get("current")
        return None if value is None else int(value)

    @property
    def error(self) -> str | None:
        """The error that stopped the job, or None if it was interrupted."""
        value = self.document.get("error")
        return None if value is None else str(value)

    def touches(self) -> set[str]:
        """Every image whose content or view the job may have changed, or still needs."""
        plan = self.plan
        paths = {plan.base, plan.image, *plan.chain, *plan.merged, *plan.deleted}
        paths |= {r.image for r in plan.rebased} | {a.image for a in plan.at_risk}
        return {os.path.realpath(p) for p in paths if p}  # a pull that flattens has no base

    def percent(self) -> int:
        """How far the copy got, in percent (100 once the commit step is done)."""
        if self.done > 0:
            return 100
        return int(float(self.document.get("fraction", 0.0)) * 100)


def load_record(path: str) -> JobRecord:
    """Read one record; BackchainError if it is not a record this version understands."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown journal version {document.get('version')!r}")
        plan = plan_from_record(document["record"])
        target = target_from_record(document["target"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BackchainError(f"the job record {path} cannot be read ({err})") from err
    return JobRecord(path, document, plan, target)


def is_running(record: JobRecord) -> bool:
    """Whether the job still runs: its process (pid and start time) lives and holds its locks.

    The process alone is not enough: a window stays alive after its job failed.
    """
    pid = record.document.get("pid")
    start = record.document.get("pid_start")
    if not isinstance(pid, int) or record.error is not None:
        return False
    if not process_alive(pid, start if isinstance(start, int) else None):
        return False
    holder = holder_of(record.plan.receiver)
    return (
        holder is not None and holder.get("pid") == pid and holder.get("job") in (None, record.id)
    )


def unfinished_jobs(
    paths: Iterable[str] | None = None, include_running: bool = False
) -> list[JobRecord]:
    """Interrupted or failed jobs (not running ones) that touch any of ``paths`` (all if None)."""
    try:
        names = sorted(n for n in os.listdir(jobs_dir()) if n.endswith(".json"))
    except OSError:
        return []
    wanted = None if paths is None else {os.path.realpath(p) for p in paths}
    records = []
    for name in names:
        try:
            record = load_record(os.path.join(jobs_dir(), name))
        except BackchainError:
            continue
        if wanted is not None and not record.touches() & wanted:
            continue
        if include_running or not is_running(record):
            records.append(record)
    return records


def find_job(job_id: str) -> JobRecord:
    """The record with this id (a unique prefix will do)."""
    matches = [r for r in unfinished_jobs() if r.id.startswith(job_id)]
    if len(matches) != 1:
        found = "no" if not matches else "more than one"
        raise BackchainError(f"{found} unfinished job matches '{job_id}'")
    return matches[0]


def describe(record: JobRecord) -> str:
    """What happened and where every file stands, in the user's words."""
    plan = record.plan
    name = os.path.basename
    head = f"A {plan.operation.value} of {name(plan.top)} into {name(plan.base)}"
    if plan.operation is Operation.PULL:
        head = f"A pull into {name(plan.top)}"
    if record.done == 0:
        where = f"at {record.percent()}%"
    elif record.done < len(plan.steps):
        step = plan.steps[record.done]
        where = f"after {record.done} of {len(plan.steps)} steps, before {_step_words(step)}"
    else:
        where = "after its last step"
    if record.error and record.error.startswith("cancelled"):
        stopped = f"was cancelled {where}"
    elif record.error:
        stopped = f"failed {where}: {record.error}"
    else:
        stopped = f"was interrupted {where}"
    correct = [plan.image, *(r.image for r in plan.rebased)]
    correct = [p for p in dict.fromkeys(correct) if os.path.exists(p)]
    changed = [a.image for a in plan.at_risk]
    if record.done > 0 or record.percent() > 0 or record.current is not None:
        changed = [a.image for a in plan.invalid] + changed
    text = f"{head} {stopped}."
    if correct:
        verb = "still reads" if len(correct) == 1 else "still read"
        text += f" {', '.join(map(name, correct))} {verb} correctly"
        text += "; " if changed else "."
    if changed:
        text += f"{', '.join(map(name, changed))} may read changed data."
    return text + " Re-run or dismiss."


def _step_words(step: Step) -> str:
    target = os.path.basename(step.target)
    return {
        StepKind.COMMIT: "the copy",
        StepKind.PULL: "the copy",
        StepKind.REBASE: f"re-pointing {target}",
        StepKind.VERIFY: f"comparing {target} with the base",
        StepKind.DELETE: f"deleting {target}",
    }.get(step.kind, step.kind.value)


def dismiss(record: JobRecord) -> None:
    """Forget a job without running it (the files stay as they are)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record.path)
