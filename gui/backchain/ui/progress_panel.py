"""The running job: a progress bar with phase, throughput and time left, Cancel, and a log."""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
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
TICK_MS = 200
"""Between two reports the bar moves on at the measured rate, this often."""


def describe_progress(
    done: int,
    total: int,
    phase: str,
    elapsed: float,
    plan_bytes: int | None,
    rate: float | None = None,
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
        if rate is None and elapsed >= MIN_RATE_SECONDS:
            rate = done / elapsed
        if 0 < done < total and rate:
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
        # A long refusal must wrap, never widen the window past the screen.
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
        self._limit = 0
        self._samples: list[tuple[float, int]] = []
        self._shown = 0.0
        self._ticker = QTimer(self)
        self._ticker.setInterval(TICK_MS)
        self._ticker.timeout.connect(self._on_ticker_timeout)

    @property
    def phase(self) -> str:
        """The phase the job is in now (empty before the first report)."""
        return self._phase

    def job_started(self, title: str, plan_bytes: int | None = None, limit: int = 0) -> None:
        """Reset for a new job; ``plan_bytes`` is what the plan copies, ``limit`` its -r rate."""
        self.events = []
        self.statuses = []
        self._plan_bytes = plan_bytes
        self._limit = limit
        self._samples = []
        self._shown = 0.0
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
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._phase_start = phase, now
            self._samples = []
        self._samples.append((now, done))
        share = min(1.0, done / total) if total > 0 else 0.0
        self._shown = share
        self.bar.setValue(int(share * 1000))
        elapsed = now - self._phase_start
        rate = self._rate()
        bar, status = describe_progress(done, total, phase, elapsed, self._plan_bytes, rate)
        self.bar.setFormat(bar)
        self.status.setText(status)
        self.statuses.append(status)
        if phase in BYTE_PHASES and 0 < done < total:
            self._ticker.start()
        else:
            self._ticker.stop()

    def _rate(self) -> float | None:
        """Bytes per second between the first and the last report of this phase.

        qemu-img reports in bursts: measured from the phase's start, the first burst looks
        twice as fast as a rate limit allows. The limit itself caps the estimate.
        """
        if len(self._samples) < 2:
            return float(self._limit) if self._limit else None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < MIN_RATE_SECONDS or d1 <= d0:
            return float(self._limit) if self._limit else None
        rate = (d1 - d0) / (t1 - t0)
        return min(rate, float(self._limit)) if self._limit else rate

    def _on_ticker_timeout(self) -> None:
        """Move the bar on at the measured rate until the next report (never past 99%)."""
        rate = self._rate()
        if not self.events or not rate:
            return
        done, total, _phase = self.events[-1]
        since = time.monotonic() - self._samples[-1][0]
        guess = min(total * 0.99, done + rate * since)
        share = max(self._shown, guess / total) if total > 0 else 0.0
        self.bar.setValue(int(share * 1000))

    def append_log(self, text: str) -> None:
        """Add lines to the log pane."""
        for line in text.replace("\r", "\n").splitlines():
            if line.strip():
                self.log.appendPlainText(line)

    def job_finished(self, ok: bool, summary: str, cancelled: bool = False) -> None:
        """Final state of the bar; the user's own Cancel is a cancel, not a failure."""
        self._ticker.stop()
        self.cancel_button.setEnabled(False)
        self.bar.setRange(0, 1000)
        if ok:
            self.bar.setValue(1000)
        self.bar.setFormat("done" if ok else "cancelled" if cancelled else "stopped")
        self.status.setText(summary)
        head = "== done: " if ok else "== cancelled: " if cancelled else "== failed: "
        self.append_log(head + summary)
