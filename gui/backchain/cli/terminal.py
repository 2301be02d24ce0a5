"""A ProgressSink that draws a one-line progress bar on a terminal."""

from __future__ import annotations

import sys
import time

from backchain.core.describe import human_bytes
from backchain.core.model import CommitPlan, OnReady, Step
from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TextIO


class TerminalSink:
    """Draws ``[#####     ]  45% commit  120 MiB/s`` on stderr; keeps the final message."""

    def __init__(self, enabled: bool, stream: TextIO | None = None,
                 on_ready: OnReady = OnReady.ASK) -> None:  # fmt: skip
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.message = ""
        self.on_ready = on_ready
        self._start = time.monotonic()

    def started(self, plan: CommitPlan) -> None:
        """Remember when the job began, for the throughput figure."""
        self._start = time.monotonic()

    def step_started(self, step: Step) -> None:
        """Nothing to draw until the step reports progress."""

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Redraw the bar."""
        if not self.enabled or total <= 0:
            return
        fraction = min(max(done / total, 0.0), 1.0)
        filled = int(fraction * 30)
        speed = ""
        elapsed = time.monotonic() - self._start
        if phase in ("commit", "pull") and total > 100 and elapsed > 0:
            speed = f"  {human_bytes(int(done / elapsed))}/s"
        bar = "#" * filled + " " * (30 - filled)
        self.stream.write(f"\r[{bar}] {fraction:4.0%} {phase:<8}{speed}   ")
        self.stream.flush()

    def logged(self, text: str) -> None:
        """Command output is not shown on the terminal bar."""

    def ready(self) -> OnReady:
        """Answer with the choice given on the command line."""
        return self.on_ready

    def finished(self, ok: bool, message: str) -> None:
        """End the bar's line and keep the message for the caller."""
        self.message = message
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
