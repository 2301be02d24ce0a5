"""Opening things in the window: files, the demo, scanned folders, recent files, drops."""

from __future__ import annotations

import os

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu

from backchain.engines.demo import make_demo
from backchain.ui.background import run_in_background
from backchain.ui.banners import MessageBanner
from backchain.ui.job_panel import JobPanel
from backchain.ui.libvirt_panel import LibvirtPanel
from backchain.ui.loader import ChainLoader
from backchain.ui.menus import Menus
from backchain.ui.plan_panel import PlanPanel
from backchain.ui.sources import Source, SourceEvents
from backchain.ui.sources.files import FileSource
from backchain.ui.window_parts import DemoFolders, Recent, ScanMemory


class OpeningMixin(QMainWindow):
    """The main window's part that chooses and (re)reads its one Source."""

    source: Source | None
    image: str | None
    events: SourceEvents
    recent: Recent
    scan_memory: ScanMemory
    demo_folders: DemoFolders
    loader: ChainLoader
    job_panel: JobPanel
    plan_panel: PlanPanel
    libvirt_panel: LibvirtPanel
    menus: Menus
    recent_menu: QMenu
    banner: MessageBanner
    outcome: MessageBanner

    def show_load_error(self, where: str, summary: str, details: str = "") -> None:
        """Implemented by the window."""
        raise NotImplementedError

    def _set_status(self, text: str) -> None:
        raise NotImplementedError

    # -- opening ---------------------------------------------------------------------------------

    def open_image(self, path: str, scan_dirs: list[str] | None = None) -> None:
        """Read ``path``'s graph in the background, with siblings also looked for in
        ``scan_dirs`` (None: the folders remembered for this chain)."""
        if self.job_panel.running:
            return
        path = os.path.abspath(path)
        if scan_dirs is not None:
            self.scan_memory.remember(path, scan_dirs)
        dirs = self.scan_memory.folders(path) if scan_dirs is None else scan_dirs
        self.recent.add(path)
        self.rebuild_recent_menu()
        self.open_source(FileSource(path, self.events, self.loader, dirs))

    def open_source(self, source: Source) -> None:
        """Make ``source`` the window's one source and read it."""
        if self.job_panel.running:
            return
        if source is not self.source:
            self.outcome.hide()  # a job's outcome belongs to the source it ran on
        self.source = source
        if not isinstance(source, FileSource):
            self.loader.cancel()
        self.plan_panel.engine = source.engine
        self.plan_panel.set_adjust(source.adjust)
        self.libvirt_panel.disk_session.hide_controls()
        self.menus.scan_action.setEnabled(isinstance(source, FileSource))
        self.banner.hide()
        source.reload()

    def open_demo(self) -> None:
        """Build the demo tree with qemu-img (off the GUI thread), then open it."""
        self._set_status("Building the demo images with qemu-img…")

        def opened(active: str) -> None:
            self.demo_folders.add(os.path.dirname(active))
            self.open_image(active)

        run_in_background(
            lambda _report: make_demo(),
            on_result=opened,
            on_error=lambda error: self.show_load_error("demo", f"cannot build the demo: {error}"),
        )

    def open_dialog(self) -> None:
        """File → Open."""
        start = os.path.dirname(self.image) if self.image else os.path.expanduser("~")
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", start, "Disk images (*.qcow2 *.img *.qcow);;All files (*)"
        )
        if path:
            self.open_image(path)

    def scan_folders(self) -> None:
        """File → Scan folders…: add a folder to look for this chain's siblings in."""
        source = self.source
        if not isinstance(source, FileSource):
            return
        start = source.scan_dirs[-1] if source.scan_dirs else os.path.dirname(source.path)
        folder = QFileDialog.getExistingDirectory(self, "Scan a folder for siblings", start)
        if folder:
            self.open_image(source.path, [*source.scan_dirs, folder])

    def reload(self) -> None:
        """Read the graph again (after a job, or on F5)."""
        if self.source is not None and not self.job_panel.running:
            self.open_source(self.source)

    def recent_files(self) -> list[str]:
        """Most recent first."""
        return self.recent.paths()

    def rebuild_recent_menu(self) -> None:
        """Refill File → Recent."""
        menu = self.recent_menu
        menu.clear()
        for path in self.recent.paths():
            action = menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_image(p))
        menu.setEnabled(bool(self.recent.paths()) and not self.job_panel.running)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept dropped local files."""
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        """Open the first dropped file."""
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_image(url.toLocalFile())
                event.acceptProposedAction()
                return
