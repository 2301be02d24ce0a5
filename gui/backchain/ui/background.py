"""Run a callable off the GUI thread; its stages, result or exception come back as signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class Relay(QObject):
    """Lives in the GUI thread, so signals emitted from the pool arrive there (queued)."""

    staged = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)


class _Task(QRunnable):
    def __init__(self, work: Callable[[Callable[[Any], None]], Any], relay: Relay) -> None:
        super().__init__()
        self._work = work
        self._relay = relay

    def run(self) -> None:  # runs in a pool thread
        try:
            result = self._work(self._relay.staged.emit)
        except BaseException as error:
            self._relay.failed.emit(error)
        else:
            self._relay.succeeded.emit(result)


_alive: set[Relay] = set()


def run_in_background(
    work: Callable[[Callable[[Any], None]], Any],
    on_stage: Callable[[Any], None] | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> Relay:
    """Start ``work(report)`` in Qt's global pool; ``report(x)`` calls ``on_stage(x)`` later."""
    relay = Relay()
    _alive.add(relay)  # keep the relay (and its connections) alive until the task ends
    if on_stage is not None:
        relay.staged.connect(on_stage)
    if on_result is not None:
        relay.succeeded.connect(on_result)
    if on_error is not None:
        relay.failed.connect(on_error)
    relay.succeeded.connect(lambda _r: _alive.discard(relay))
    relay.failed.connect(lambda _e: _alive.discard(relay))
    QThreadPool.globalInstance().start(_Task(work, relay))
    return relay
