"""Running a job from the terminal: in a worker thread that Ctrl-C and SIGTERM cancel cleanly."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable

from backchain.cli.output import EXIT_OK
from backchain.cli.terminal import TerminalSink
from backchain.core.model import CommitPlan
from backchain.engines.progress import CancelToken


def run_cancellable(work: Callable[[], None], cancel: CancelToken, name: str) -> None:
    """Run ``work`` in a thread; Ctrl-C and SIGTERM cancel it, and it is always waited for.

    ``work``'s exception, if any, is raised again here, on the main thread.
    """
    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as err:  # re-raised below, on the main thread
            failure.append(err)

    worker = threading.Thread(target=guarded, name=name)
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.cancel())
    worker.start()
    try:
        while worker.is_alive():
            try:
                worker.join(0.2)
            except KeyboardInterrupt:
                cancel.cancel()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failure:
        raise failure[0]


def execute(plan: CommitPlan, as_json: bool, target: object | None = None) -> int:
    """Run a plan through the runner, with a terminal progress bar; print the outcome."""
    from backchain.engines.runner import run_plan

    cancel = CancelToken()
    sink = TerminalSink(enabled=sys.stderr.isatty() and not as_json,
                        on_ready=plan.request.on_ready)  # fmt: skip
    run_cancellable(lambda: run_plan(plan, sink, cancel, target), cancel, "backchain-job")
    if as_json:
        print(json.dumps({"ok": True, "plan": plan.to_json(), "message": sink.message}, indent=2))
    else:
        print(sink.message)
    return EXIT_OK
