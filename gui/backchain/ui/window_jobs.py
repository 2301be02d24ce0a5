"""The main window's part that runs jobs: confirm, start, cancel, lock the controls, re-read."""

from __future__ import annotations

import os

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QMessageBox

from backchain.core.model import CommitPlan
from backchain.engines.journal import JobRecord
from backchain.ui.chain_view import ChainView
from backchain.ui.confirm import confirm_commit
from backchain.ui.job_worker import JobController, JobWorker
from backchain.ui.journal_banner import JournalBanner
from backchain.ui.progress_panel import ProgressPanel
from backchain.ui.sources.files import FileSource
from backchain.ui.window_open import OpeningMixin
from backchain.ui.window_parts import clamp_to_screen
from backchain.ui.wording import where_the_data_is


class RunningMixin(OpeningMixin):
    """At most one job at a time, running exactly the plan the preview shows."""

    job_done = Signal(bool, str, str)
    """A job ended: ok, summary, details."""

    plan: CommitPlan | None
    view: ChainView
    journal_banner: JournalBanner
    open_action: QAction
    cancel_action: QAction
    commit_action: QAction
    connect_menu: QMenu

    @property
    def jobs(self) -> JobController:
        """The job thread's owner."""
        return self.job_panel.jobs

    @property
    def progress(self) -> ProgressPanel:
        """The job panel's bar, status and log."""
        return self.job_panel.progress

    @property
    def job_dock(self) -> QDockWidget:
        """The dock that holds the job panel."""
        return self.job_panel.dock

    @property
    def failure_box(self) -> QMessageBox | None:
        """The last "Commit failed" dialog."""
        return self.job_panel.failure_box

    @property
    def connection(self) -> object | None:
        """What the runner gets for the current source."""
        return self.source.target if self.source is not None else None

    def commit(self) -> None:
        """Confirm the shown plan, then run it."""
        if self.plan is None or self.jobs.running:
            return
        if confirm_commit(self.plan, self):
            self.start_job(self.plan)

    def start_job(self, plan: CommitPlan) -> JobWorker:
        """Run ``plan`` (exactly the previewed object) in the job thread."""
        self.outcome.hide()
        return self.job_panel.start(plan, self.connection)

    def cancel_job(self) -> None:
        """Esc / the Cancel button: asks first, saying what the files will be left as."""
        self.job_panel.request_cancel()

    def _on_journal_banner_rerun_requested(self, record: JobRecord) -> None:
        if not self.jobs.running:
            self.job_panel.start(record.plan, self.connection, resume=record)

    def _on_job_panel_busy_changed(self, busy: bool) -> None:
        """Lock the selection, the options and Commit while a job runs; the plan stays shown."""
        live = self.source is not None and self.source.live_speed
        self.plan_panel.set_locked(busy, live_rate=live)
        self.view.locked = busy
        for action in (self.open_action, self.menus.demo_action, self.menus.reload_action):
            action.setEnabled(not busy)
        self.menus.scan_action.setEnabled(not busy and isinstance(self.source, FileSource))
        self.recent_menu.setEnabled(not busy and bool(self.recent.paths()))
        self.connect_menu.setEnabled(not busy)
        self.journal_banner.set_busy(busy)
        self.cancel_action.setEnabled(busy)
        self.commit_action.setEnabled(not busy and self.plan is not None)

    def _on_job_panel_job_done(self, ok: bool, summary: str, details: str) -> None:
        worker_plan = self.job_panel.last_plan
        resumed = self.job_panel.last_was_resume
        if ok and worker_plan is not None and not resumed:
            self.outcome.show_message(where_the_data_is(worker_plan))
        if self.image is not None and not os.path.exists(self.image) and worker_plan:
            # DELETE removed the opened image: show what is left of its chain.
            survivor = worker_plan.base
            if worker_plan.rebased:
                survivor = worker_plan.rebased[0].image
            if isinstance(self.source, FileSource):
                self.source = FileSource(survivor, self.events, self.loader,
                                         self.source.scan_dirs)  # fmt: skip
        if resumed:
            self.journal_banner.rerun_finished(ok, summary, details)
        clamp_to_screen(self)
        self.reload()
        self.job_done.emit(ok, summary, details)
