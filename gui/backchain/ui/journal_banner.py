"""A banner that reports an interrupted commit touching the shown images, with Re-run and Dismiss.

Re-run goes through the window's job panel (progress bar, Cancel); Dismiss asks first.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QEvent, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

from backchain.engines import journal
from backchain.ui.banners import PALETTE_EVENTS, Tone, style_frame
from backchain.ui.guards import ask


class JournalBanner(QFrame):
    """Shows the first unfinished job that touches the shown images; hidden when there is none."""

    rerun_requested = Signal(object)
    """The user wants the rest of this JobRecord run (the window starts it in the job panel)."""
    resumed = Signal(bool, str, str)
    """A re-run ended: ok, summary (names the files), details."""
    dismissed = Signal(str)
    """The job with this id was forgotten; no file changed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("journalBanner")
        style_frame(self, Tone.WARNING)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setMinimumWidth(160)
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("Run the steps that did not complete, in the job panel")
        self.dismiss_button = QPushButton("Dismiss…")
        self.dismiss_button.setToolTip("Forget this job; the files stay as they are")
        layout = QHBoxLayout(self)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.rerun_button)
        layout.addWidget(self.dismiss_button)
        self.rerun_button.clicked.connect(self._on_rerun_button_clicked)
        self.dismiss_button.clicked.connect(self._on_dismiss_button_clicked)
        self.record: journal.JobRecord | None = None
        self.question: QMessageBox | None = None
        self._paths: list[str] = []
        self._rerunning = False
        self.hide()

    def changeEvent(self, event: QEvent) -> None:
        """A new palette: derive the colours again (dark themes)."""
        super().changeEvent(event)
        if event.type() in PALETTE_EVENTS:
            style_frame(self, Tone.WARNING)

    def refresh(self, paths: Iterable[str]) -> None:
        """Look for unfinished jobs touching ``paths`` (a few small files: cheap enough here)."""
        self._paths = list(paths)
        style_frame(self, Tone.WARNING)  # the palette may have changed while it was hidden
        if self._rerunning:
            return
        records = journal.unfinished_jobs(self._paths)
        self.record = records[0] if records else None
        if self.record is None:
            self.hide()
            return
        more = f" ({len(records) - 1} more)" if len(records) > 1 else ""
        self.label.setText(journal.describe(self.record) + more)
        self.set_busy(False)
        self.show()

    def clear(self) -> None:
        """Nothing is shown (a failed open)."""
        self._paths, self.record = [], None
        self.hide()

    def set_busy(self, busy: bool) -> None:
        """While any job runs, neither button may start or forget another one."""
        self.rerun_button.setEnabled(not busy)
        self.dismiss_button.setEnabled(not busy)

    def rerun_finished(self, ok: bool, summary: str, details: str) -> None:
        """The window's job panel ran the re-run; look again and report."""
        self._rerunning = False
        self.refresh(self._paths)
        self.resumed.emit(ok, summary, details)

    def _on_dismiss_button_clicked(self) -> None:
        record = self.record
        if record is None or self.question is not None:
            return
        self.question = ask(
            self,
            "Forget the unfinished commit?",
            "Backchain will no longer offer to finish this commit.",
            journal.describe(record).removesuffix(" Re-run or dismiss.")
            + " The files stay exactly as they are now.",
            "Forget it",
            "Keep it",
            lambda: self._dismiss(record),
        )
        self.question.finished.connect(self._on_question_finished)

    def _on_question_finished(self, _result: int) -> None:
        self.question = None

    def _dismiss(self, record: journal.JobRecord) -> None:
        journal.dismiss(record)
        self.refresh(self._paths)
        self.dismissed.emit(record.id)

    def _on_rerun_button_clicked(self) -> None:
        record = self.record
        if record is None:
            return
        self._rerunning = True
        self.hide()
        self.rerun_requested.emit(record)
