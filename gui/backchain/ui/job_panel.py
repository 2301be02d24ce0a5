"""The job dock: runs a plan, or the rest of an interrupted one, with progress, Cancel and ready."""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QMessageBox, QWidget

from backchain.core.describe import job_title
from backchain.core.model import CommitPlan, OnReady
from backchain.engines.journal import JobRecord
from backchain.ui.guards import ask, state_if_cancelled
from backchain.ui.job_worker import JobController, JobWorker
from backchain.ui.progress_panel import ProgressPanel
from backchain.ui.wording import lock_refusal


class JobPanel(QObject):
    """One job at a time: every start, re-run, question and outcome goes through here."""

    busy_changed = Signal(bool)
    """A job started (True) or ended (False)."""
    job_done = Signal(bool, str, str)
    """ok, summary, details; after the progress panel shows the outcome."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        self.jobs = JobController(self)
        self.jobs.job_finished.connect(self._on_jobs_job_finished)
        self.progress = ProgressPanel()
        self.progress.cancel_clicked.connect(self.request_cancel)
        self.dock = QDockWidget("Job")
        self.dock.setObjectName("jobDock")
        self.dock.setWidget(self.progress)
        self.dock.setAllowedAreas(Qt.DockWidgetArea.BottomDockWidgetArea)
        self.failure_box: QMessageBox | None = None
        self.ready_box: QMessageBox | None = None
        self.question: QMessageBox | None = None
        """The open "abandon this job?" question, if any."""
        self.last_plan: CommitPlan | None = None
        """The plan of the job that runs, or ran last."""
        self.last_was_resume = False
        self._cancelled_in = ""

    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self.jobs.running

    @property
    def plan(self) -> CommitPlan | None:
        """The plan that runs now."""
        worker = self.jobs.worker
        return worker.plan if worker is not None else None

    def start(
        self, plan: CommitPlan, connection: object | None, resume: JobRecord | None = None
    ) -> JobWorker:
        """Run ``plan`` (exactly the previewed object), or the rest of ``resume``'s steps."""
        worker = self.jobs.start(plan, connection, resume)
        self.last_plan, self.last_was_resume = plan, resume is not None
        worker.step_started.connect(self.progress.step_started)
        worker.progressed.connect(self.progress.progressed)
        worker.logged.connect(self.progress.append_log)
        # A bound method of a GUI-thread object, so Qt queues the call onto the GUI thread.
        worker.ready_reached.connect(self._on_worker_ready_reached)
        title = job_title(plan)
        if resume is not None:
            title = f"Re-running the {plan.operation.value} of {os.path.basename(plan.top)}"
        self.progress.job_started(title, plan.bytes_to_copy, plan.request.rate)
        self.dock.show()
        self.busy_changed.emit(True)
        return worker

    # -- abandoning --------------------------------------------------------------------------

    def request_cancel(self) -> None:
        """Esc or Cancel: ask first, saying what the files will be left as."""
        plan = self.plan
        if plan is None or self.question is not None:
            return
        self.question = ask(
            self._parent,
            "Cancel the commit?",
            f"Stop committing {os.path.basename(plan.top)} into {os.path.basename(plan.base)}?",
            state_if_cancelled(plan, self.progress.phase),
            "Cancel the commit",
            "Keep running",
            self._cancel,
        )
        self.question.finished.connect(self._on_question_finished)

    def ask_to_quit(self, quit_now: Callable[[], None]) -> None:
        """Closing mid-job: cancel, wait for the job to stop, then close (``quit_now``)."""
        plan = self.plan
        if plan is None or self.question is not None:
            return

        def cancel_then_quit() -> None:
            self.job_done.connect(lambda *_args: quit_now())
            self._cancel()

        self.question = ask(
            self._parent,
            "Quit while a commit runs?",
            f"A commit of {os.path.basename(plan.top)} into {os.path.basename(plan.base)} "
            "is running. Cancel it and quit?",
            state_if_cancelled(plan, self.progress.phase),
            "Cancel the commit and quit",
            "Keep running",
            cancel_then_quit,
        )
        self.question.finished.connect(self._on_question_finished)

    def _cancel(self) -> None:
        self._cancelled_in = self.progress.phase
        self.jobs.cancel()

    def _on_question_finished(self, _result: int) -> None:
        self.question = None

    # -- ready and outcome ---------------------------------------------------------------------

    def _on_worker_ready_reached(self) -> None:
        """An active commit caught up (online engines): pivot, or keep top as the active layer."""
        worker = self.jobs.worker
        if worker is None:
            return
        box = QMessageBox(self._parent)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Commit ready")
        box.setText(f"{os.path.basename(worker.plan.base)} has caught up with the active layer.")
        box.setInformativeText(
            "Pivot: the VM switches to base, and the merged layers are no longer used.\n"
            "Keep overlay: the VM stays on top; base keeps a consistent copy."
        )
        pivot = box.addButton("Pivot to base", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep overlay", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(pivot)

        def answer(_result: int) -> None:
            self.ready_box = None
            clicked = box.clickedButton()
            if clicked is pivot:
                worker.choose(OnReady.PIVOT)
            elif clicked is keep:
                worker.choose(OnReady.KEEP_OVERLAY)

        box.finished.connect(answer)
        self.ready_box = box
        box.open()

    def _on_jobs_job_finished(self, ok: bool, summary: str, details: str) -> None:
        if self.question is not None:
            self.question.done(0)  # the job ended by itself: nothing left to abandon
        if self.ready_box is not None:
            self.ready_box.done(0)
        cancelled = not ok and self.jobs.cancelled_by_user
        summary = lock_refusal(summary, os.getpid())
        if cancelled and self.last_plan is not None:
            state = state_if_cancelled(self.last_plan, self._cancelled_in)
            summary = f"Cancelled, as you asked. {state}"
        self.progress.job_finished(ok, summary, cancelled=cancelled)
        if not ok and not cancelled:
            self._show_failure(summary, details)
        self.busy_changed.emit(False)
        self.job_done.emit(ok, summary, details)

    def _show_failure(self, summary: str, details: str) -> None:
        box = QMessageBox(self._parent)
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle("Commit failed")
        box.setText(summary)
        box.setInformativeText("The graph is read again so you see where things stand.")
        if details:
            box.setDetailedText(details)
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        self.failure_box = box
        box.open()  # window-modal but not blocking: the graph refreshes behind it
