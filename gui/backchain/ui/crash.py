"""Uncaught exceptions: write a crash log under the user's state directory and show a dialog."""

from __future__ import annotations

import datetime
import os
import platform
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

import backchain
from backchain.engines.journal import state_dir


def crash_dir() -> str:
    """Where crash logs go: ``crashes`` in the state directory the journals use.

    That is $BACKCHAIN_STATE_DIR when set (tests, scripts), else ``~/.local/state/backchain``.
    """
    return os.path.join(state_dir(), "crashes")


def write_crash_log(error: BaseException) -> str:
    """Write the traceback and versions to a new file; return its path."""
    directory = crash_dir()
    os.makedirs(directory, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = os.path.join(directory, f"crash-{stamp}.log")
    from PySide6 import __version__ as pyside_version

    lines = [
        f"backchain {getattr(backchain, '__version__', '?')}",
        f"python {platform.python_version()}, PySide6 {pyside_version}, {platform.platform()}",
        f"thread {threading.current_thread().name}",
        "",
        "".join(traceback.format_exception(error)),
    ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path


class _Reporter(QObject):
    """Carries a crash from any thread to the GUI thread (the signal is queued)."""

    crashed = Signal(str, str)


_reporter: _Reporter | None = None
last_dialog: QMessageBox | None = None
"""The crash dialog on screen, if any (tests close it)."""


def show_crash_dialog(log_path: str, text: str) -> None:
    """Tell the user, with the traceback under Details and where the log was written."""
    box = QMessageBox(QApplication.activeWindow())
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle("Backchain: unexpected error")
    box.setText("Backchain hit an unexpected error. No file was changed by the error itself.")
    box.setInformativeText(f"A crash log was written to:\n{log_path}")
    box.setDetailedText(text)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    global last_dialog
    last_dialog = box
    # open(), not exec(): a nested event loop inside whatever slot just failed could re-enter it.
    box.open()


def _handle(error: BaseException) -> None:
    try:
        path = write_crash_log(error)
    except OSError as write_error:
        path = f"(could not write the crash log: {write_error})"
    text = "".join(traceback.format_exception(error))
    sys.stderr.write(text)
    if _reporter is not None and QApplication.instance() is not None:
        _reporter.crashed.emit(path, text)


def install() -> None:
    """Route uncaught exceptions (GUI thread and others) to the log and the dialog."""
    global _reporter
    _reporter = _Reporter()
    _reporter.crashed.connect(show_crash_dialog, Qt.ConnectionType.QueuedConnection)

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
            return
        _handle(error.with_traceback(tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            _handle(args.exc_value)

    sys.excepthook = hook
    threading.excepthook = thread_hook
