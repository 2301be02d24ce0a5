"""The running job: a progress bar with phase, throughput and time left, Cancel, and a log."""

from __future__ import annotations

import time

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backchain.ui.text import human_bytes, human_duration, human_rate

PHASES = {
    "commit": "Committing",
    "rebase": "Re-pointing overlays",
    "verify": "Verifying",
    "delete": "Deleting",
}


class ProgressPanel(QWidget):
    """Shows one job at a time; the log keeps every command and its output across jobs."""

    cancel_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Commit progress")
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("idle")
        self.bar.setTextVisible(True)
        self.status = QLabel("No job running.")
        self.status.setAccessibleName("Job status")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel job")
        self.cancel_button.setToolTip(
            "Stop the running job (Esc). Base may then be partly written."
        )
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setAccessibleName("Job log")
        self.log.setToolTip("Every command run and its output.")
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))

        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.log, 1)
        self._phase = ""
        self._phase_start = 0.0
        self.events: list[tuple[int, int, str]] = []
        """Every progress report of the current job (tests read it)."""

    def job_started(self, title: str) -> None:
        """Reset for a new job."""
        self.events = []
        self._phase = ""
        self.bar.setValue(0)
        self.bar.setFormat("starting…")
        self.status.setText(title)
        self.cancel_button.setEnabled(True)
        self.append_log(f"== {title}")

    def step_started(self, kind: str, shell: str) -> None:
        """A new command; the throughput clock restarts with its phase."""
        del shell  # the runner logs the command itself
        self._phase = kind
        self._phase_start = time.monotonic()

    def progressed(self, done: int, total: int, phase: str) -> None:
        """Move the bar and say how fast and how long."""
        self.events.append((done, total, phase))
        if phase != self._phase:
            self._phase, self._phase_start = phase, time.monotonic()
        share = done / total if total > 0 else 0.0
        self.bar.setValue(int(share * 1000))
        label = PHASES.get(phase, phase.capitalize())
        self.bar.setFormat(f"{label}: {share * 100:.1f}%")
        elapsed = time.monotonic() - self._phase_start
        parts = [label]
        if phase == "commit" and total > 100 and elapsed > 0.2 and done > 0:
            rate = done / elapsed
            parts.append(f"{human_bytes(done)} of {human_bytes(total)}")
            parts.append(human_rate(rate))
            parts.append(f"about {human_duration((total - done) / rate)} left")
        elif total > 0 and phase != "commit":
            parts.append(f"{done} of {total}")
        self.status.setText(" · ".join(parts))

    def append_log(self, text: str) -> None:
        """Add lines to the log pane."""
        for line in text.replace("\r", "\n").splitlines():
            if line.strip():
                self.log.appendPlainText(line)

    def job_finished(self, ok: bool, summary: str) -> None:
        """Final state of the bar."""
        self.cancel_button.setEnabled(False)
        if ok:
            self.bar.setValue(1000)
        self.bar.setFormat("done" if ok else "stopped")
        self.status.setText(summary)
        self.append_log(("== done: " if ok else "== failed: ") + summary)
