"""Menus, toolbar and keyboard shortcuts of the main window, including the Connect menu hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox, QToolBar

if TYPE_CHECKING:
    from backchain.ui.main_window import MainWindow


def _action(
    window: MainWindow, text: str, shortcut: QKeySequence | str | None, tip: str
) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setToolTip(tip)
    action.setStatusTip(tip)
    return action


def build_menus(window: MainWindow) -> None:
    """Create every menu and the toolbar; the Connect menu starts with a placeholder."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    open_action = _action(window, "&Open…", QKeySequence.StandardKey.Open, "Open a disk image")
    open_action.triggered.connect(window.open_dialog)
    window.open_action = open_action
    demo = _action(window, "Open &demo", None, "Build a sample chain with qemu-img and open it")
    demo.triggered.connect(window.open_demo)
    reload_action = _action(
        window, "&Reload", QKeySequence.StandardKey.Refresh, "Read the graph again"
    )
    reload_action.triggered.connect(window.reload)
    # Spelled out: without a desktop platform theme the standard Quit key has no binding.
    quit_action = _action(window, "&Quit", "Ctrl+Q", "Close Backchain (Ctrl+Q)")
    quit_action.triggered.connect(window.close)
    file_menu.addActions([open_action, demo])
    window.recent_menu = file_menu.addMenu("Open &recent")
    window.rebuild_recent_menu()
    file_menu.addAction(reload_action)
    file_menu.addSeparator()
    file_menu.addAction(quit_action)

    # The online (QMP) and libvirt engineers add their entries here with add_connect_action().
    window.connect_menu = bar.addMenu("&Connect")
    placeholder = QAction("No connections available", window)
    placeholder.setEnabled(False)
    placeholder.setObjectName("connectPlaceholder")
    window.connect_menu.addAction(placeholder)

    view_menu = bar.addMenu("&View")
    zoom_in = _action(window, "Zoom &in", QKeySequence.StandardKey.ZoomIn, "Zoom in (Ctrl++)")
    zoom_in.triggered.connect(window.view.zoom_in)
    zoom_out = _action(window, "Zoom &out", QKeySequence.StandardKey.ZoomOut, "Zoom out (Ctrl+-)")
    zoom_out.triggered.connect(window.view.zoom_out)
    fit = _action(window, "&Fit to window", "Ctrl+0", "Show the whole graph (Ctrl+0)")
    fit.triggered.connect(window.view.fit)
    view_menu.addActions([zoom_in, zoom_out, fit])
    window.zoom_in_action, window.zoom_out_action, window.fit_action = zoom_in, zoom_out, fit
    view_menu.addSeparator()
    view_menu.addAction(window.job_dock.toggleViewAction())

    commit_menu = bar.addMenu("C&ommit")
    window.commit_action = _action(window, "&Commit…", "Ctrl+Return", "Review and run the commit")
    window.commit_action.triggered.connect(window.commit)
    window.commit_action.setEnabled(False)
    window.cancel_action = _action(window, "C&ancel job", "Escape", "Stop the running job")
    window.cancel_action.triggered.connect(window.cancel_job)
    window.cancel_action.setEnabled(False)
    commit_menu.addActions([window.commit_action, window.cancel_action])

    help_menu = bar.addMenu("&Help")
    about = _action(window, "&About Backchain", None, "About Backchain")
    about.triggered.connect(lambda: _about(window))
    help_menu.addAction(about)
    about_qt = _action(window, "About &Qt", None, "About Qt")
    about_qt.triggered.connect(QApplication.aboutQt)
    help_menu.addAction(about_qt)

    tools = QToolBar("Main", window)
    tools.setObjectName("mainToolbar")
    tools.setMovable(False)
    tools.addActions([open_action, reload_action])
    tools.addSeparator()
    tools.addActions([zoom_in, zoom_out, fit])
    tools.addSeparator()
    tools.addActions([window.commit_action, window.cancel_action])
    window.addToolBar(tools)


def add_connect_action(window: MainWindow, action: QAction) -> None:
    """Add an entry to the Connect menu, dropping the placeholder on first use."""
    for existing in window.connect_menu.actions():
        if existing.objectName() == "connectPlaceholder":
            window.connect_menu.removeAction(existing)
    window.connect_menu.addAction(action)


def _about(window: MainWindow) -> None:
    QMessageBox.about(
        window,
        "About Backchain",
        "<b>Backchain</b><br>See a qcow2 backing chain, preview exactly what a block commit "
        "will do, then do it.",
    )
