"""libvirt's event loop and Qt's in one process: Qt must not iterate GLib's global context.

libvirt's default event loop (engines/libvirt/jobs.py) iterates GLib's global main context in a
thread of its own. Qt's GLib dispatcher iterates the same context in the GUI thread, and the two
together segfaulted: in the test suite (a libvirt job, then a QApplication) about one run in
three. The crash is a race, so these tests check its cause instead: which dispatcher Qt runs.
"""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtCore import QAbstractEventDispatcher
from PySide6.QtWidgets import QApplication

PROBE = (
    "import sys\n"
    "if sys.argv[1] == 'window':\n"
    "    import backchain.ui.main_window\n"
    "from PySide6.QtCore import QAbstractEventDispatcher\n"
    "from PySide6.QtWidgets import QApplication\n"
    "app = QApplication([])\n"
    "print(QAbstractEventDispatcher.instance().metaObject().className())\n"
)


def _dispatcher(mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "QT_NO_GLIB"}
    env["QT_QPA_PLATFORM"] = "offscreen"
    result = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True,
                            text=True, timeout=120, check=True)  # fmt: skip
    return result.stdout.strip()


def test_the_window_keeps_qt_off_glibs_global_context() -> None:
    # Without Backchain's window modules Qt picks GLib here: the probe can tell the two apart.
    assert "Glib" in _dispatcher("bare-qt")
    assert "Glib" not in _dispatcher("window")


def test_the_test_suites_application_is_off_glib_too(qapp: QApplication) -> None:
    dispatcher = QAbstractEventDispatcher.instance()
    assert dispatcher is not None
    assert "Glib" not in dispatcher.metaObject().className()
