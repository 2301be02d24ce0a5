"""A banner that reports an interrupted commit touching the shown images, with Re-run and Dismiss.

Hook for the window: create it once (``self.journal_banner = JournalBanner(self)``, placed above
the graph), call ``self.journal_banner.refresh(graph.paths)`` in ``show_graph``, and connect
``journal_banner.resumed`` to a slot that calls ``reload()`` (and shows a failure like a job's).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from backchain.core.errors import BackchainError
from backchain.engines import journal
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.ui.background import run_in_background


class JournalBanner(QFrame):
    """Shows the first unfinished job that touches the shown images; hidden when there is none."""

    resumed = Signal(bool, str, str)
    """A re-run ended: ok, summary (names the files), details."""
    dismissed = Signal(str)
    """The job with this id was forgotten; no file changed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("journalBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#journalBanner { background: #fff4ce; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.rerun_button = QPushButton("Re-run")
        self.dismiss_button = QPushButton("Dismiss")
        layout = QHBoxLayout(self)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.rerun_button)
        layout.addWidget(self.dismiss_button)
        self.rerun_button.clicked.connect(self._on_rerun_button_clicked)
        self.dismiss_button.clicked.connect(self._on_dismiss_button_clicked)
        self.record: journal.JobRecord | None = None
        self._paths: list[str] = []
        self.hide()

    def refresh(self, paths: Iterable[str]) -> None:
        """Look for unfinished jobs touching ``paths`` (a few small files: cheap enough here)."""
        self._paths = list(paths)
        records = journal.unfinished_jobs(self._paths)
        self.record = records[0] if records else None
        if self.record is None:
            self.hide()
            return
        more = f" ({len(records) - 1} more)" if len(records) > 1 else ""
        self.label.setText(journal.describe(self.record) + more)
        self.rerun_button.setEnabled(True)
        self.dismiss_button.setEnabled(True)
        self.show()

    def _on_dismiss_button_clicked(self) -> None:
        if self.record is None:
            return
        job_id = self.record.id
        journal.dismiss(self.record)
        self.refresh(self._paths)
        self.dismissed.emit(job_id)

    def _on_rerun_button_clicked(self) -> None:
        record = self.record
        if record is None:
            return
        self.rerun_button.setEnabled(False)
        self.dismiss_button.setEnabled(False)
        self.label.setText(
            f"Running the rest of the commit into {os.path.basename(record.plan.base)}…"
        )

        def work(_report: object) -> str:  # runs in a pool thread
            from backchain.engines.runner import resume_job

            sink = RecordingSink()
            resume_job(record, sink, CancelToken())
            return sink.outcome[1] if sink.outcome else "done"

        run_in_background(work, on_result=self._on_rerun_succeeded, on_error=self._on_rerun_failed)

    def _on_rerun_succeeded(self, message: object) -> None:
        self.refresh(self._paths)
        self.resumed.emit(True, str(message), "")

    def _on_rerun_failed(self, error: BaseException) -> None:
        self.refresh(self._paths)
        if isinstance(error, BackchainError):
            self.resumed.emit(False, error.summary, error.details)
        else:
            self.resumed.emit(False, f"the re-run failed: {error}", repr(error))
