"""The main window: composes the graph, the commit panel, the preview and the job panel."""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from backchain.core.describe import job_title
from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, OnReady
from backchain.engines.registry import make_plan
from backchain.ui.background import run_in_background
from backchain.ui.chain_view import ChainView
from backchain.ui.confirm import confirm_commit
from backchain.ui.job_worker import JobController, JobWorker
from backchain.ui.journal_banner import JournalBanner
from backchain.ui.loader import ChainLoader
from backchain.ui.plan_panel import PlanPanel
from backchain.ui.preview_panel import Legend, PreviewPanel
from backchain.ui.progress_panel import ProgressPanel
from backchain.ui.settings import open_settings

MAX_RECENT = 10


class MainWindow(QMainWindow):
    """One open image graph, its commit preview, and at most one running job."""

    graph_shown = Signal(str)
    """A stage of the graph is on screen (``headers``, ``scanned``, ``extents``, ``error``)."""
    job_done = Signal(bool, str, str)
    """A job ended: ok, summary, details."""

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else open_settings()
        self.graph: ImageGraph | None = None
        self.image: str | None = None
        self.plan: CommitPlan | None = None
        self.plan_error: str | None = None
        self.stage = ""
        # Hooks for the online (QMP) and libvirt panels: they set the connection the runner
        # gets, and a reloader that re-reads their graph after a job instead of the disk.
        self.connection: object | None = None
        self.reloader: Callable[[], None] | None = None
        # The libvirt panel plans through the engine's rules (shut-off wrapping, remote notes);
        # whatever it returns is the plan that is previewed and then run.
        self.planner: Callable[[ImageGraph, CommitRequest], CommitPlan] | None = None
        self.failure_box: QMessageBox | None = None

        self.view = ChainView()
        self.view.top_chosen.connect(self._on_view_top_chosen)
        self.view.base_chosen.connect(self._on_view_base_chosen)
        self.banner = QLabel()
        self.banner.setObjectName("errorBanner")
        self.banner.setWordWrap(True)
        self.banner.setAccessibleName("Error message")
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setStyleSheet(
            "QLabel#errorBanner { background: #D55E00; color: white; padding: 8px;"
            " border-radius: 4px; font-weight: bold; }"
        )
        self.banner.hide()
        self.status_label = QLabel()
        self.legend = Legend()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        left_layout.addWidget(self.banner)
        self.journal_banner = JournalBanner()
        self.journal_banner.resumed.connect(self._on_journal_banner_resumed)
        left_layout.addWidget(self.journal_banner)
        left_layout.addWidget(self.view, 1)
        left_layout.addWidget(self.legend)

        self.plan_panel = PlanPanel()
        self.plan_panel.changed.connect(self.replan)
        self.plan_panel.commit_clicked.connect(self.commit)
        self.preview = PreviewPanel()
        self.preview.direction_chosen.connect(self.plan_panel.set_direction)
        # A splitter, not a scroll area: word-wrapped labels make a scroll area size its widget
        # to the preferred height, which pushed the Commands box below the fold.
        right = QSplitter(Qt.Orientation.Vertical)
        right.setObjectName("rightSplitter")
        right.setChildrenCollapsible(False)
        right.addWidget(self.plan_panel)
        right.addWidget(self.preview)
        right.setStretchFactor(0, 0)
        right.setStretchFactor(1, 1)
        right.setMinimumWidth(420)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.splitter)

        self.progress = ProgressPanel()
        self.progress.cancel_clicked.connect(self.cancel_job)
        self.job_dock = QDockWidget("Job", self)
        self.job_dock.setObjectName("jobDock")
        self.job_dock.setWidget(self.progress)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.job_dock)
        # Only as tall as the bar, the status and a few log lines: the preview needs the height.
        self.resizeDocks(
            [self.job_dock], [self.progress.sizeHint().height()], Qt.Orientation.Vertical
        )

        self.loader = ChainLoader(self)
        self.loader.stage_loaded.connect(self._on_loader_stage_loaded)
        self.loader.failed.connect(self._on_loader_failed)
        self.jobs = JobController(self)
        self.jobs.job_finished.connect(self._on_jobs_job_finished)

        self.setAcceptDrops(True)
        self.statusBar().addPermanentWidget(self.status_label)
        from backchain.ui.menus import build_menus

        build_menus(self)
        from backchain.ui.libvirt_panel import install as install_libvirt
        from backchain.ui.qmp_connect import install as install_qmp

        install_qmp(self)
        install_libvirt(self)
        self._update_title()
        self._restore_geometry()

    # -- opening ---------------------------------------------------------------------------------

    def open_image(self, path: str) -> None:
        """Read ``path``'s graph in the background; the graph appears stage by stage."""
        path = os.path.abspath(path)
        self.reloader = None
        self.planner = None
        self.connection = None
        self.plan_panel.engine = "qemu-img"
        self.banner.hide()
        self.status_label.setText(f"Reading {os.path.basename(path)}…")
        self._add_recent(path)
        self.loader.load(path)

    def open_demo(self) -> None:
        """Build the demo tree with qemu-img (off the GUI thread), then open it."""
        from backchain.engines.demo import make_demo

        self.status_label.setText("Building the demo images with qemu-img…")
        run_in_background(
            lambda _report: make_demo(),
            on_result=lambda active: self.open_image(str(active)),
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

    def reload(self) -> None:
        """Read the graph again (after a job, or on F5)."""
        if self.reloader is not None:
            self.reloader()
        elif self.image is not None:
            self.open_image(self.image)

    def show_graph(self, graph: ImageGraph, focus: str, stage: str = "extents") -> None:
        """Put a graph on screen (the loader and the online panels call this)."""
        self.graph, self.image, self.stage = graph, focus, stage
        self.banner.hide()
        self.view.set_graph(graph, focus)
        self.journal_banner.refresh(graph.paths)
        self.plan_panel.set_graph(graph, focus)  # emits changed -> replan
        self._update_title()
        self.graph_shown.emit(stage)

    def show_load_error(self, path: str, summary: str, details: str = "") -> None:
        """An image that cannot be opened: say so in the window, naming the file and cause."""
        self.banner.setText(summary if os.path.basename(path) in summary else f"{path}: {summary}")
        self.banner.setToolTip(details or summary)
        self.banner.show()
        self.status_label.setText("")
        self.graph_shown.emit("error")

    def _on_loader_stage_loaded(self, graph: ImageGraph, image: str, stage: str) -> None:
        self.show_graph(graph, image, stage)
        waiting = {"headers": "scanning for siblings…", "scanned": "reading allocation…"}
        self.status_label.setText(
            f"{len(graph)} images · " + waiting.get(stage, "allocation loaded")
        )

    def _on_loader_failed(self, image: str, summary: str, details: str) -> None:
        self.show_load_error(image, summary, details)

    # -- selection and preview ------------------------------------------------------------------

    def _on_view_top_chosen(self, path: str) -> None:
        self.plan_panel.choose_top(path)

    def _on_view_base_chosen(self, path: str) -> None:
        self.plan_panel.choose_base(path)

    def replan(self) -> None:
        """Plan the current request and show that very plan: colours, words and commands."""
        request = self.plan_panel.request()
        self.plan, self.plan_error = None, None
        if request is not None and self.graph is not None:
            try:
                self.plan = (self.planner or make_plan)(self.graph, request)
            except PlanError as error:
                self.plan_error = error.summary
        if self.plan is not None:
            self.view.set_preview(self.plan.roles(), self.plan.top, self.plan.base)
        else:
            top = self.plan_panel.top() or self.image
            self.view.set_preview({}, top, self.plan_panel.base())
        self.preview.show_plan(self.plan, self.plan_error)
        self.plan_panel.show_verdict(self.plan_error, busy=self.jobs.running)
        self.commit_action.setEnabled(self.plan is not None and not self.jobs.running)

    # -- running ---------------------------------------------------------------------------------

    def commit(self) -> None:
        """Confirm the shown plan, then run it."""
        if self.plan is None or self.jobs.running:
            return
        if confirm_commit(self.plan, self):
            self.start_job(self.plan)

    def start_job(self, plan: CommitPlan) -> JobWorker:
        """Run ``plan`` (exactly the previewed object) in the job thread."""
        worker = self.jobs.start(plan, self.connection)
        worker.step_started.connect(self.progress.step_started)
        worker.progressed.connect(self.progress.progressed)
        worker.logged.connect(self.progress.append_log)
        # A bound method of a GUI-thread object, so Qt queues the call onto the GUI thread.
        worker.ready_reached.connect(self._on_worker_ready_reached)
        self.progress.job_started(job_title(plan), plan.bytes_to_copy)
        self.job_dock.show()
        self.plan_panel.show_verdict(None, busy=True)
        self.commit_action.setEnabled(False)
        self.cancel_action.setEnabled(True)
        return worker

    def _on_worker_ready_reached(self) -> None:
        """An active commit caught up (online engines): pivot, or keep top as the active layer."""
        worker = self.jobs.worker
        if worker is None:
            return
        box = QMessageBox(self)
        box.setWindowTitle("Commit ready")
        box.setText(f"{os.path.basename(worker.plan.base)} has caught up with the active layer.")
        box.setInformativeText(
            "Pivot makes base the active layer. Keep overlay leaves the active layer as it is, "
            "with base holding a consistent copy."
        )
        pivot = box.addButton("Pivot", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Keep overlay", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(pivot)

        def answer() -> None:
            worker.choose(OnReady.PIVOT if box.clickedButton() is pivot else OnReady.KEEP_OVERLAY)

        box.finished.connect(answer)
        box.open()

    def cancel_job(self) -> None:
        """Esc / the Cancel button."""
        self.jobs.cancel()

    def _on_jobs_job_finished(self, ok: bool, summary: str, details: str) -> None:
        self.progress.job_finished(ok, summary)
        self.cancel_action.setEnabled(False)
        if not ok:
            self._show_failure(summary, details)
        ran = self.plan
        if self.reloader is None and self.image is not None and not os.path.exists(self.image):
            # DELETE removed the opened image: show what is left of its chain.
            survivor = ran.base if ran is not None else None
            if ran is not None and ran.rebased:
                survivor = ran.rebased[0].image
            self.image = survivor
        self.reload()
        self.job_done.emit(ok, summary, details)

    def _on_journal_banner_resumed(self, ok: bool, summary: str, details: str) -> None:
        if not ok:
            self._show_failure(summary, details)
        else:
            self.status_label.setText(summary)
        self.reload()

    def _show_failure(self, summary: str, details: str) -> None:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle("Commit failed")
        box.setText(summary)
        box.setInformativeText("The graph is read again from disk so you see where things stand.")
        if details:
            box.setDetailedText(details)
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        self.failure_box = box
        box.open()  # window-modal but not blocking: the graph refreshes behind it

    # -- recent files, title, settings, drag and drop -------------------------------------------

    def recent_files(self) -> list[str]:
        """Most recent first."""
        value = self.settings.value("recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [str(v) for v in items]

    def _add_recent(self, path: str) -> None:
        items = [path, *(p for p in self.recent_files() if p != path)][:MAX_RECENT]
        self.settings.setValue("recent", items)
        self.rebuild_recent_menu()

    def rebuild_recent_menu(self) -> None:
        """Refill File → Recent."""
        menu = self.recent_menu
        menu.clear()
        for path in self.recent_files():
            action = menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_image(p))
        menu.setEnabled(bool(self.recent_files()))

    def _update_title(self) -> None:
        if self.image:
            self.setWindowTitle(f"{os.path.basename(self.image)} — Backchain")
            self.setWindowFilePath(self.image)
        else:
            self.setWindowTitle("Backchain")

    def _restore_geometry(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            screen = self.screen().availableGeometry()
            self.resize(min(1360, screen.width() * 9 // 10), min(860, screen.height() * 9 // 10))
        # The preview's sentences wrap less in a wider column; the graph keeps the rest.
        self.splitter.setSizes([880, 480])
        state = self.settings.value("state")
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Keep geometry; a running job is cancelled and waited for, never abandoned."""
        if self.jobs.running:
            self.jobs.cancel()
            QTimer.singleShot(200, self.close)
            event.ignore()
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        super().closeEvent(event)

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

    # -- actions used by menus.py ----------------------------------------------------------------

    open_action: QAction
    commit_action: QAction
    cancel_action: QAction
    zoom_in_action: QAction
    zoom_out_action: QAction
    fit_action: QAction
    recent_menu: QMenu
    connect_menu: QMenu

    def add_connect_action(self, action: QAction) -> None:
        """For the online and libvirt panels: put an entry in the Connect menu."""
        from backchain.ui.menus import add_connect_action

        add_connect_action(self, action)
