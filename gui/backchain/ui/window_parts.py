"""The window's small helpers: recent files, remembered scan folders, demo folders, geometry."""

from __future__ import annotations

import contextlib
import os
import shutil

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QSplitter, QWidget

MAX_RECENT = 10


def _strings(value: object) -> list[str]:
    """A QSettings list (which comes back as a str when it holds one item)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


class Recent:
    """File → Open recent, most recent first."""

    def __init__(self, settings: QSettings) -> None:
        self._settings = settings

    def paths(self) -> list[str]:
        """Most recent first."""
        return _strings(self._settings.value("recent", []))

    def add(self, path: str) -> None:
        """Put ``path`` first."""
        items = [path, *(p for p in self.paths() if p != path)][:MAX_RECENT]
        self._settings.setValue("recent", items)

    def remove(self, path: str) -> None:
        """A file that failed to open leaves the list."""
        self._settings.setValue("recent", [p for p in self.paths() if p != path])


class ScanMemory:
    """The extra folders scanned for each chain's siblings, keyed by the opened image."""

    def __init__(self, settings: QSettings) -> None:
        self._settings = settings

    @staticmethod
    def _key(image: str) -> str:
        # QSettings keys treat "/" as groups; the path is kept whole in a value instead.
        return "scan/" + os.path.abspath(image).replace("/", "|")

    def folders(self, image: str) -> list[str]:
        """The folders remembered for ``image``."""
        return _strings(self._settings.value(self._key(image), []))

    def remember(self, image: str, folders: list[str]) -> None:
        """Keep ``folders`` for ``image`` (an empty list forgets them)."""
        unique = list(dict.fromkeys(os.path.abspath(f) for f in folders))
        self._settings.setValue(self._key(image), unique)


class DemoFolders:
    """Temporary folders that Open demo created; they are removed when the window closes."""

    def __init__(self) -> None:
        self._folders: list[str] = []

    def add(self, folder: str) -> None:
        """Remove ``folder`` on exit."""
        self._folders.append(folder)

    def remove_all(self) -> None:
        """Delete every demo folder."""
        while self._folders:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._folders.pop())


def build_layout(
    window: QMainWindow, left: QWidget, panel: QWidget, preview: QWidget
) -> QDockWidget:
    """The graph in the middle; the commit panel over the preview in a full-height column.

    The column is a fixed dock, so that the job dock below spans the graph only: at 768 px
    the preview keeps its height (a bottom dock across the window squeezed it to two rows).
    """
    # A splitter, not a scroll area: word-wrapped labels make a scroll area size its widget
    # to the preferred height, which pushed the Commands box below the fold.
    right = QSplitter(Qt.Orientation.Vertical)
    right.setObjectName("rightSplitter")
    right.setChildrenCollapsible(False)
    right.addWidget(panel)
    right.addWidget(preview)
    right.setStretchFactor(0, 0)
    right.setStretchFactor(1, 1)
    right.setMinimumWidth(360)
    dock = QDockWidget("Commit and preview")
    dock.setObjectName("commitDock")
    dock.setWidget(right)
    dock.setTitleBarWidget(QWidget())  # part of the window, not a floating tool
    dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
    window.setCentralWidget(left)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    return dock


def restore_geometry(window: QMainWindow, settings: QSettings, column: QDockWidget) -> None:
    """Last session's geometry, or 90% of the screen at most; then clamp to the screen."""
    geometry = settings.value("geometry")
    if isinstance(geometry, QByteArray) and not geometry.isEmpty():
        window.restoreGeometry(geometry)
    else:
        screen = window.screen().availableGeometry()
        window.resize(min(1360, screen.width() * 9 // 10), min(860, screen.height() * 9 // 10))
    # The preview's sentences wrap less in a wider column; the graph keeps the rest.
    width = max(440, window.width() * 38 // 100)
    window.resizeDocks([column], [width], Qt.Orientation.Horizontal)
    state = settings.value("state")
    if isinstance(state, QByteArray):
        window.restoreState(state)
    clamp_to_screen(window)


def clamp_to_screen(window: QMainWindow) -> None:
    """Shrink the window to the screen's available area if anything made it larger."""
    screen = window.screen()
    if screen is None or window.isFullScreen():
        return
    room = screen.availableGeometry()
    frame = window.frameGeometry()
    extra_w, extra_h = frame.width() - window.width(), frame.height() - window.height()
    width = min(window.width(), room.width() - extra_w)
    height = min(window.height(), room.height() - extra_h)
    window.setMaximumSize(room.width() - extra_w, room.height() - extra_h)
    if (width, height) != (window.width(), window.height()):
        window.resize(width, height)
