"""How a running job reports progress and learns that it should stop, without knowing about Qt."""

from __future__ import annotations

import threading

from backchain.core.model import CommitPlan, OnReady, Step
from backchain.core.static_typing import Protocol
from backchain.core.valueclass import field, valueclass


class ProgressSink(Protocol):
    """Receives a job's events; every method is called from the thread that runs the job."""

    def started(self, plan: CommitPlan) -> None:
        """The job begins; nothing has been written yet."""

    def step_started(self, step: Step) -> None:
        """One step (a command or a call) begins."""

    def advanced(self, done: int, total: int, phase: str) -> None:
        """``done`` of ``total`` bytes in ``phase`` (commit, rebase, verify, delete, ...)."""

    def logged(self, text: str) -> None:
        """A line of command output, for the log pane."""

    def ready(self) -> OnReady:
        """An active commit has caught up: return PIVOT or KEEP_OVERLAY (ASK means wait)."""

    def finished(self, ok: bool, message: str) -> None:
        """The job ended, successfully or not; ``message`` says what state the files are in."""


class CancelToken:
    """A thread-safe flag that a job polls to learn that the user pressed Cancel."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop as soon as it safely can."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancel; True if cancelled."""
        return self._event.wait(seconds)


@valueclass
class RecordingSink:
    """A sink that keeps every event, for tests and for the CLI's --json output."""

    on_ready: OnReady = OnReady.PIVOT
    events: list[tuple[str, object]] = field(default_factory=list)
    progress: list[tuple[int, int, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    outcome: tuple[bool, str] | None = None

    def started(self, plan: CommitPlan) -> None:
        """Record the start."""
        self.events.append(("started", plan.top))

    def step_started(self, step: Step) -> None:
        """Record the step."""
        self.events.append(("step", step.kind))

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Record the progress."""
        self.progress.append((done, total, phase))

    def logged(self, text: str) -> None:
        """Record the line."""
        self.log.append(text)

    def ready(self) -> OnReady:
        """Record readiness and answer with the preset choice."""
        self.events.append(("ready", self.on_ready))
        return self.on_ready

    def finished(self, ok: bool, message: str) -> None:
        """Record the outcome."""
        self.outcome = (ok, message)
        self.events.append(("finished", ok))
