"""The GUI entry point: QApplication, crash handler, icon, settings, and run_gui() for the CLI."""

from __future__ import annotations

import importlib.resources
import os
import sys

from PySide6.QtCore import QCoreApplication, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication, QStyleFactory

from backchain.engines import host_tools
from backchain.ui import crash
from backchain.ui.main_window import MainWindow
from backchain.ui.tools_dialog import show_missing_tools_dialog

SELF_TEST_TIMEOUT_MS = 120_000


def make_app() -> QApplication:
    """The one QApplication, set up for HiDPI, the system palette and our icon."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    # Fractional scale factors (1.25, 1.5) are passed through so drawing stays crisp.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    QCoreApplication.setOrganizationName("backchain")
    QCoreApplication.setApplicationName("backchain")
    app = QApplication(sys.argv[:1])
    app.setApplicationDisplayName("Backchain")
    app.setDesktopFileName("backchain")
    # Without a desktop platform theme Qt falls back to the dated "Windows" style; Fusion
    # follows the system palette (light or dark) and looks the same everywhere.
    if app.style().name().lower() == "windows" and "Fusion" in QStyleFactory.keys():
        app.setStyle("Fusion")
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    return app


def app_icon() -> QIcon | None:
    """backchain.resources/backchain.svg, once the packaging adds it."""
    try:
        resource = importlib.resources.files("backchain.resources") / "backchain.svg"
        if resource.is_file():
            return QIcon(str(resource))
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        pass
    return None


def _warn_missing_tools(window: MainWindow) -> None:
    """Show the packaging engineer's dialog when qemu-img or friends are missing."""
    missing = host_tools.missing_tools()
    if missing:
        show_missing_tools_dialog(window, missing)


def _self_test(window: MainWindow, app: QApplication, image: str | None = None) -> None:
    """Open ``image`` (default: the demo), wait for allocation, then exit 0 (1 on timeout/error).

    It prints what it opened and the window title, so scripts and tests can check both.
    """

    def on_shown(stage: str) -> None:
        if stage == "error":
            print(f"self-test: failed: {window.banner.text()}", file=sys.stderr)
            app.exit(1)
        elif stage == "extents" and (window.plan is not None or image is not None):
            print(f"self-test: opened {window.image} as {window.windowTitle()!r}")
            plan = window.plan
            if plan is None:
                print(f"self-test: ok: {len(window.graph or [])} images, {window.plan_error}")
            else:
                print(
                    f"self-test: ok: {len(window.graph or [])} images, plan commits "
                    f"{os.path.basename(plan.top)} into {os.path.basename(plan.base)}, "
                    f"{plan.bytes_to_copy} bytes, {len(plan.steps)} steps"
                )
            app.exit(0)

    window.graph_shown.connect(on_shown)
    QTimer.singleShot(SELF_TEST_TIMEOUT_MS, lambda: app.exit(1))
    if image is not None:
        window.open_image(image)
    else:
        window.open_demo()


def _quit_after(window: MainWindow, seconds: float, opening: bool) -> None:
    """--quit-after: close after ``seconds``, but never while the asked-for graph is still read.

    On closing it prints what the window showed (scripts and tests read it).
    """
    shown: list[str] = []
    window.graph_shown.connect(shown.append)

    def close() -> None:
        if opening and not {"extents", "error"} & set(shown):
            QTimer.singleShot(100, close)
            return
        what = window.stage if "error" not in shown else "error: " + window.banner.text()
        title = window.windowTitle()
        count = len(window.graph) if window.graph is not None else 0
        print(f"quit-after: showing {window.image} as {title!r} ({what or 'nothing'})", flush=True)
        print(f"quit-after: {count} images in the graph", flush=True)
        window.close()

    QTimer.singleShot(int(seconds * 1000), close)


def run_gui(
    image: str | None,
    demo: bool = False,
    quit_after: float | None = None,
    self_test: bool = False,
    scan_dirs: tuple[str, ...] = (),
) -> int:
    """Show the window on ``image`` (or the demo) and run until it closes; returns the exit code.

    ``scan_dirs`` are searched for siblings too (``backchain IMAGE --scan DIR``).
    """
    app = make_app()
    crash.install()
    window = MainWindow()
    window.show()
    if self_test:
        _self_test(window, app, image)
    elif demo:
        window.open_demo()
    elif image:
        window.open_image(image, scan_dirs=list(scan_dirs) or None)
    if quit_after is not None:
        _quit_after(window, quit_after, opening=bool(image or demo) and not self_test)
    if not self_test:
        QTimer.singleShot(0, lambda: _warn_missing_tools(window))
    return int(app.exec())
