"""The running job: a progress bar with phase, throughput and time left, Cancel, and a log."""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Signal
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
    "synchronising": "Synchronising",
    "ready": "Ready",
    "rebase": "Re-pointing overlays",
    "verify": "Verifying",
    "delete": "Deleting",
}
BYTE_PHASES = frozenset({"commit", "synchronising", "ready"})
"""Phases whose done/total are bytes (qemu-img commit scaled to the plan, QMP/libvirt jobs)."""
COUNT_UNITS = {"rebase": ("image", "images"), "delete": ("file", "files")}
"""Phases the runner reports as "n of count" steps."""
PERCENT_SCALE = 100
"""The runner's scale for a step it can only report as a fraction (verify, a 0-byte commit)."""
MIN_RATE_SECONDS = 0.2
"""Below this the rate is noise, so throughput and time left are not shown yet."""


def describe_progress(
    done: int, total: int, phase: str, elapsed: float, plan_bytes: int | None
) -> tuple[str, str]:
    """The bar's text and the status line for one report; ``elapsed`` is since the phase began.

    Bytes get throughput and time left; counted steps say "n of m images"; everything else
    (verify, a commit of 0 bytes that the runner scales to 100) is a percentage only.
    """
    share = min(1.0, done / total) if total > 0 else 0.0
    label = PHASES.get(phase, phase.capitalize())
    bar = f"{label}: {share * 100:.1f}%"
    parts = [label]
    in_bytes = phase in BYTE_PHASES and not (total == PERCENT_SCALE and not plan_bytes)
    if in_bytes and total > 0:
        parts.append(f"{human_bytes(done)} of {human_bytes(total)}")
        if 0 < done < total and elapsed >= MIN_RATE_SECONDS:
            rate = done / elapsed
            parts.append(human_rate(rate))
            parts.append(f"about {human_duration((total - done) / rate)} left")
    elif phase in COUNT_UNITS and total > 0:
        one, many = COUNT_UNITS[phase]
        parts.append(f"{done} of {total} {one if total == 1 else many}")
    elif total > 0:
        parts.append(f"{share * 100:.0f}%")
    return bar, " · ".join(parts)


class _LogView(QPlainTextEdit):
    """The log pane; it asks for a few lines only, so the dock leaves the preview its room."""

    def sizeHint(self) -> QSize:
        """Three lines of text; the user can drag the dock taller."""
        return QSize(400, self.fontMetrics().lineSpacing() * 3 + 12)

    def minimumSizeHint(self) -> QSize:
        """Two lines: enough to see the last command while the preview keeps its room."""
        return QSize(200, self.fontMetrics().lineSpacing() * 2 + 10)


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
        self.log = _LogView()
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
        self.statuses: list[str] = []
        """Every status line shown for the current job."""
        self._plan_bytes: int | None = None

    def job_started(self, title: str, plan_bytes: int | None = None) -> None:
        """Reset for a new job; ``plan_bytes`` is what the plan copies (the commit's scale)."""
        self.events = []
        self.statuses = []
        self._plan_bytes = plan_bytes
        self._phase = ""
        self.bar.setRange(0, 1000)
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
        """Move the bar and say how far, how fast and how long (bytes only for byte phases)."""
        self.events.append((done, total, phase))
        if phase != self._phase:
            self._phase, self._phase_start = phase, time.monotonic()
        share = min(1.0, done / total) if total > 0 else 0.0
        self.bar.setValue(int(share * 1000))
        elapsed = time.monotonic() - self._phase_start
        bar, status = describe_progress(done, total, phase, elapsed, self._plan_bytes)
        self.bar.setFormat(bar)
        self.status.setText(status)
        self.statuses.append(status)

    def append_log(self, text: str) -> None:
        """Add lines to the log pane."""
        for line in text.replace("\r", "\n").splitlines():
            if line.strip():
                self.log.appendPlainText(line)

    def job_finished(self, ok: bool, summary: str) -> None:
        """Final state of the bar."""
        self.cancel_button.setEnabled(False)
        self.bar.setRange(0, 1000)
        if ok:
            self.bar.setValue(1000)
        self.bar.setFormat("done" if ok else "stopped")
        self.status.setText(summary)
        self.append_log(("== done: " if ok else "== failed: ") + summary)
