"""Menus, toolbar and keyboard shortcuts of the main window; it gets the actions back."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QMenu,
    QMenuBar,
    QMessageBox,
    QToolBar,
    QWidget,
)

from backchain import __version__
from backchain.core.describe import snapshot_stamp
from backchain.core.graph import Layer
from backchain.core.valueclass import valueclass


@valueclass(frozen=True)
class MenuHandlers:
    """What each menu entry calls."""

    open_dialog: Callable[[], None]
    open_demo: Callable[[], None]
    scan_folders: Callable[[], None]
    reload: Callable[[], None]
    quit: Callable[[], None]
    zoom_in: Callable[[], None]
    zoom_out: Callable[[], None]
    fit: Callable[[], None]
    commit: Callable[[], None]
    cancel: Callable[[], None]


@valueclass(frozen=True)
class Menus:
    """The actions and menus the window enables, disables and fills."""

    open_action: QAction
    demo_action: QAction
    scan_action: QAction
    reload_action: QAction
    commit_action: QAction
    cancel_action: QAction
    zoom_in_action: QAction
    zoom_out_action: QAction
    fit_action: QAction
    recent_menu: QMenu
    connect_menu: QMenu


def _action(
    parent: QWidget,
    text: str,
    shortcut: QKeySequence | QKeySequence.StandardKey | str | None,
    tip: str,
    slot: Callable[[], None],
) -> QAction:
    action = QAction(text, parent)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setToolTip(tip)
    action.setStatusTip(tip)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def build_menus(window: QMainWindow, on: MenuHandlers, job_toggle: QAction) -> Menus:
    """Create every menu and the toolbar; the Connect menu starts with a placeholder."""
    key = QKeySequence.StandardKey
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    open_action = _action(window, "&Open…", key.Open, "Open a disk image", on.open_dialog)
    demo = _action(
        window, "Open &demo", None, "Build a sample chain with qemu-img and open it", on.open_demo
    )
    scan = _action(
        window, "&Scan folders…", None,
        "Also look for siblings of this chain in other folders (remembered per chain)",
        on.scan_folders,
    )  # fmt: skip
    scan.setEnabled(False)
    reload_action = _action(window, "&Reload", key.Refresh, "Read the graph again", on.reload)
    # Spelled out: without a desktop platform theme the standard Quit key has no binding.
    quit_action = _action(window, "&Quit", "Ctrl+Q", "Close Backchain (Ctrl+Q)", on.quit)
    file_menu.addActions([open_action, demo])
    recent_menu = file_menu.addMenu("Open &recent")
    file_menu.addActions([scan, reload_action])
    file_menu.addSeparator()
    file_menu.addAction(quit_action)

    # The online (QMP) and libvirt panels add their entries here through add_connect_action().
    connect_menu = bar.addMenu("&Connect")
    placeholder = QAction("No connections available", window)
    placeholder.setEnabled(False)
    placeholder.setObjectName("connectPlaceholder")
    connect_menu.addAction(placeholder)

    return _view_commit_help(window, on, job_toggle, bar, open_action, demo, scan,
                             reload_action, recent_menu, connect_menu)  # fmt: skip


def _view_commit_help(
    window: QMainWindow,
    on: MenuHandlers,
    job_toggle: QAction,
    bar: QMenuBar,
    open_action: QAction,
    demo: QAction,
    scan: QAction,
    reload_action: QAction,
    recent_menu: QMenu,
    connect_menu: QMenu,
) -> Menus:
    key = QKeySequence.StandardKey
    view_menu = bar.addMenu("&View")
    zoom_in = _action(window, "Zoom &in", key.ZoomIn, "Zoom in (Ctrl++)", on.zoom_in)
    zoom_out = _action(window, "Zoom &out", key.ZoomOut, "Zoom out (Ctrl+-)", on.zoom_out)
    fit = _action(window, "&Fit to window", "Ctrl+0", "Show the whole graph (Ctrl+0)", on.fit)
    view_menu.addActions([zoom_in, zoom_out, fit])
    view_menu.addSeparator()
    view_menu.addAction(job_toggle)

    commit_menu = bar.addMenu("C&ommit")
    commit = _action(window, "&Commit…", "Ctrl+Return", "Review and run the commit", on.commit)
    commit.setEnabled(False)
    cancel = _action(window, "C&ancel job", "Escape", "Stop the running job (asks first)",
                     on.cancel)  # fmt: skip
    cancel.setEnabled(False)
    commit_menu.addActions([commit, cancel])

    help_menu = bar.addMenu("&Help")
    help_menu.addAction(
        _action(window, "&About Backchain", None, "About Backchain", lambda: _about(window))
    )
    help_menu.addAction(_action(window, "About &Qt", None, "About Qt", QApplication.aboutQt))

    tools = QToolBar("Main", window)
    tools.setObjectName("mainToolbar")
    tools.setMovable(False)
    tools.addActions([open_action, reload_action])
    tools.addSeparator()
    tools.addActions([zoom_in, zoom_out, fit])
    tools.addSeparator()
    tools.addActions([commit, cancel])
    window.addToolBar(tools)
    return Menus(open_action, demo, scan, reload_action, commit, cancel, zoom_in, zoom_out, fit,
                 recent_menu, connect_menu)  # fmt: skip


def add_connect_action(menu: QMenu, action: QAction) -> None:
    """Add an entry to the Connect menu, dropping the placeholder on first use."""
    for existing in menu.actions():
        if existing.objectName() == "connectPlaceholder":
            menu.removeAction(existing)
    menu.addAction(action)


def about_text() -> str:
    """Help → About: what Backchain is, and its version."""
    return (
        f"<b>Backchain {__version__}</b><br>See a qcow2 backing chain, preview exactly what a "
        "block commit will do, then do it."
    )


def _about(parent: QWidget) -> None:
    about(parent)


def about(parent: QWidget) -> QMessageBox:
    """Show the About box (non-blocking; returned for tests)."""
    box = QMessageBox(parent)
    box.setWindowTitle("About Backchain")
    box.setIconPixmap(parent.windowIcon().pixmap(64, 64))
    box.setText(about_text())
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.open()
    return box


def snapshot_actions(layer: Layer, parent: QMenu, chosen: Callable[[str], None]) -> list[QAction]:
    """A layer card's "Delete snapshot NAME…", one per libvirt snapshot that names the layer."""
    actions = []
    for name, created in dict((s.name, s.created) for s in layer.named_by).items():
        action = QAction(f"Delete snapshot {snapshot_stamp(name, created)}…", parent)
        action.setToolTip(f"Delete libvirt snapshot {name} as libvirt does (preview first)")
        action.triggered.connect(lambda _checked=False, n=name: chosen(n))
        actions.append(action)
    return actions
