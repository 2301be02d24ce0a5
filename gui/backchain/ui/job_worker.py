"""A commit job in a QThread: the runner's ProgressSink becomes Qt signals, Cancel a token."""

from __future__ import annotations

import os
import threading
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from backchain.core.errors import BackchainError, CancelledError
from backchain.core.model import CommitPlan, OnReady, Step
from backchain.engines import runner
from backchain.engines.journal import JobRecord
from backchain.engines.progress import CancelToken


class SignalSink:
    """Implements ProgressSink by emitting the worker's signals (called in the worker thread)."""

    def __init__(self, worker: JobWorker) -> None:
        self._worker = worker

    def started(self, plan: CommitPlan) -> None:
        """The job begins."""
        self._worker.started.emit(plan)

    def step_started(self, step: Step) -> None:
        """One command begins."""
        self._worker.step_started.emit(step.kind, step.as_shell())

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Progress in bytes (or steps) within one phase."""
        self._worker.progressed.emit(done, total, phase)

    def logged(self, text: str) -> None:
        """A line for the log pane."""
        self._worker.logged.emit(text)

    def ready(self) -> OnReady:
        """An active commit caught up: wait for the user's pivot/keep choice (or Cancel)."""
        return self._worker.wait_for_choice()

    def finished(self, ok: bool, message: str) -> None:
        """The runner's own closing words go to the log; the worker reports the outcome."""
        self._worker.logged.emit(message)


class JobWorker(QObject):
    """Runs one CommitPlan with engines.runner.run_plan; lives in its own QThread."""

    started = Signal(object)
    step_started = Signal(str, str)
    progressed = Signal(int, int, str)
    logged = Signal(str)
    ready_reached = Signal()
    job_finished = Signal(bool, str, str)
    """ok, summary, details (command, exit status and stderr on failure)."""

    def __init__(
        self, plan: CommitPlan, connection: object | None = None, resume: JobRecord | None = None
    ) -> None:
        super().__init__()
        self.plan = plan
        self.connection = connection
        self.resume = resume
        """An interrupted job whose remaining steps this worker runs (the banner's Re-run)."""
        self.token = CancelToken()
        self._choice = OnReady.ASK
        self._chosen = threading.Event()

    @Slot()
    def run(self) -> None:  # runs in the worker thread
        """Run the plan that the preview showed, unchanged, and report exactly once."""
        try:
            if self.resume is not None:
                runner.resume_job(self.resume, SignalSink(self), self.token)
            else:
                runner.run_plan(self.plan, SignalSink(self), self.token, self.connection)
        except CancelledError as error:
            self.job_finished.emit(False, "Cancelled: " + error.summary, error.details)
        except BackchainError as error:
            self.job_finished.emit(False, error.summary, error.details)
        except Exception as error:
            details = "".join(traceback.format_exception(error))
            self.job_finished.emit(False, f"Unexpected error: {error}", details)
        else:
            name = os.path.basename
            self.job_finished.emit(
                True, f"Committed {name(self.plan.top)} into {name(self.plan.base)}.", ""
            )

    def cancel(self) -> None:
        """Ask the job to stop (called from the GUI thread; the token is thread-safe)."""
        self.token.cancel()
        self._chosen.set()

    def choose(self, choice: OnReady) -> None:
        """The user's answer once an active commit is ready (GUI thread)."""
        self._choice = choice
        self._chosen.set()

    def wait_for_choice(self) -> OnReady:  # runs in the worker thread
        """Block until the user picks pivot or keep-overlay, unless the plan already says."""
        if self.plan.request.on_ready is not OnReady.ASK:
            return self.plan.request.on_ready
        self.ready_reached.emit()
        while not self._chosen.wait(0.2):
            pass
        return self._choice


class JobController(QObject):
    """Owns the thread of the current job; the window talks to this, never to the thread."""

    job_started = Signal(object)
    job_finished = Signal(bool, str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: JobWorker | None = None
        self._thread: QThread | None = None
        self.cancelled_by_user = False
        """The job that ended last was stopped by the user's own Cancel."""

    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self._thread is not None

    def start(
        self, plan: CommitPlan, connection: object | None = None, resume: JobRecord | None = None
    ) -> JobWorker:
        """Start ``plan`` in a new thread; connect to the returned worker's signals for progress."""
        if self.running:
            raise RuntimeError("a job is already running")
        thread = QThread(self)
        thread.setObjectName("backchain-job")
        worker = JobWorker(plan, connection, resume)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.job_finished.connect(self._on_worker_job_finished)
        self.worker, self._thread = worker, thread
        self.cancelled_by_user = False
        thread.start()
        self.job_started.emit(plan)
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop."""
        if self.worker is not None:
            self.cancelled_by_user = True
            self.worker.cancel()

    def _on_worker_job_finished(self, ok: bool, summary: str, details: str) -> None:
        thread, worker = self._thread, self.worker
        self._thread, self.worker = None, None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        if worker is not None:
            worker.deleteLater()
        self.job_finished.emit(ok, summary, details)
