"""The main window: one Source, its graph, the commit panel, the preview and the job panel."""

from __future__ import annotations

import os

import shiboken6
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan
from backchain.engines import ledger
from backchain.engines.registry import make_plan
from backchain.ui.banners import MessageBanner, Tone
from backchain.ui.chain_view import ChainView
from backchain.ui.direction_figures import DirectionPlanner, Sides
from backchain.ui.job_panel import JobPanel
from backchain.ui.journal_banner import JournalBanner
from backchain.ui.libvirt_panel import LibvirtPanel
from backchain.ui.loader import ChainLoader
from backchain.ui.menus import MenuHandlers, add_connect_action, build_menus
from backchain.ui.plan_panel import PlanPanel
from backchain.ui.preview_panel import Legend, PreviewPanel
from backchain.ui.qmp_connect import OnlineSession
from backchain.ui.settings import open_settings
from backchain.ui.sources import Source, SourceEvents
from backchain.ui.sources.files import FileSource
from backchain.ui.window_jobs import RunningMixin
from backchain.ui.window_parts import (
    DemoFolders,
    Recent,
    ScanMemory,
    build_layout,
    clamp_to_screen,
    restore_geometry,
)
from backchain.ui.wording import already_done, humane_error

MiB = 1 << 20


class MainWindow(RunningMixin):
    """One source's image graph, its commit preview, and at most one running job."""

    graph_shown = Signal(str)
    """A stage of the graph is on screen (``headers``, ``scanned``, ``extents``, ``error``)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings if settings is not None else open_settings()
        self.graph: ImageGraph | None = None
        self.image: str | None = None
        self.plan: CommitPlan | None = None
        self.plan_error: str | None = None
        self.directions = DirectionPlanner()
        self.stage = ""
        self.source: Source | None = None
        self._watching_screen = False
        self.marks: dict[str, ledger.Mark] = {}
        """The ledger's marks on the graph shown (what earlier commits left behind)."""
        self.events = SourceEvents(
            self._on_source_shown, self._on_source_failed, self._set_status, self._log
        )
        self.recent = Recent(self.settings)
        self.scan_memory = ScanMemory(self.settings)
        self.demo_folders = DemoFolders()

        self._build_parts()
        self._build_menus()
        self._update_title()
        restore_geometry(self, self.settings, self.column)

    def _build_parts(self) -> None:
        """The graph column, the commit panel and preview, and the job dock."""
        self.view = ChainView()
        self.view.top_chosen.connect(self._on_view_top_chosen)
        self.view.base_chosen.connect(self._on_view_base_chosen)
        self.banner = MessageBanner("errorBanner", Tone.ERROR)
        self.banner.setAccessibleName("Error message")
        self.outcome = MessageBanner("outcomeBanner", Tone.NEWS)
        self.outcome.setAccessibleName("Where the data is now")
        self.journal_banner = JournalBanner()
        self.journal_banner.rerun_requested.connect(self._on_journal_banner_rerun_requested)
        self.status_label = QLabel()
        # Long folder lists must not widen the window: the label takes what is left.
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend = Legend()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        for widget in (self.banner, self.outcome, self.journal_banner):
            left_layout.addWidget(widget)
        left_layout.addWidget(self.view, 1)
        left_layout.addWidget(self.legend)

        self.plan_panel = PlanPanel()
        self.plan_panel.changed.connect(self.replan)
        self.plan_panel.commit_clicked.connect(self.commit)
        self.plan_panel.rate.valueChanged.connect(self._on_rate_changed)
        self.preview = PreviewPanel()
        self.preview.direction_chosen.connect(self.plan_panel.set_direction)
        self.preview.delete_leftovers_clicked.connect(self._on_preview_delete_leftovers_clicked)
        self.column = build_layout(self, left, self.plan_panel, self.preview)

        self.job_panel = JobPanel(self)
        self.job_panel.busy_changed.connect(self._on_job_panel_busy_changed)
        self.job_panel.job_done.connect(self._on_job_panel_job_done)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.job_panel.dock)
        self.resizeDocks(
            [self.job_dock], [self.progress.sizeHint().height()], Qt.Orientation.Vertical
        )
        self.loader = ChainLoader(self)

    def _build_menus(self) -> None:
        """Menus and toolbar, and the Connect panels that add to them."""
        self.setAcceptDrops(True)
        self.statusBar().addPermanentWidget(self.status_label, 1)
        handlers = MenuHandlers(
            self.open_dialog, self.open_demo, self.scan_folders, self.reload, self._quit,
            self.view.zoom_in, self.view.zoom_out, self.view.fit, self.commit, self.cancel_job,
        )  # fmt: skip
        self.menus = build_menus(self, handlers, self.job_dock.toggleViewAction())
        self.commit_action = self.menus.commit_action
        self.cancel_action = self.menus.cancel_action
        self.open_action = self.menus.open_action
        self.zoom_in_action, self.zoom_out_action = (
            self.menus.zoom_in_action,
            self.menus.zoom_out_action,
        )
        self.fit_action = self.menus.fit_action
        self.recent_menu, self.connect_menu = self.menus.recent_menu, self.menus.connect_menu
        self.rebuild_recent_menu()
        self.qmp_session = OnlineSession(self, self, self.plan_panel)
        self.libvirt_panel = LibvirtPanel(
            self, self, self.plan_panel, self.jobs, self.progress, self.replan
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.libvirt_panel.dock)
        self.libvirt_panel.dock.hide()
        self.view.snapshot_delete_requested.connect(self.libvirt_panel.delete_layer_snapshot)

    # -- parts the tests and panels read --------------------------------------------------------

    def current_source(self) -> Source | None:
        """The source on screen."""
        return self.source

    def add_connect_action(self, action: QAction) -> None:
        """For the online and libvirt panels: put an entry in the Connect menu."""
        add_connect_action(self.connect_menu, action)

    def show_graph(self, graph: ImageGraph, focus: str, stage: str = "extents") -> None:
        """Put a graph on screen, with the ledger's marks of what earlier commits did."""
        self.graph, self.image, self.stage = graph, focus, stage
        self.banner.hide()
        self.marks = ledger.marks(graph.paths)
        self.view.set_graph(graph, focus, {path: mark.text for path, mark in self.marks.items()})
        self.journal_banner.refresh(graph.paths)
        self.plan_panel.set_graph(graph, focus)  # emits changed -> replan
        self._update_title()
        self.graph_shown.emit(stage)

    def show_load_error(self, where: str, summary: str, details: str = "") -> None:
        """Nothing could be opened: an empty graph with the error in its place, Commit off."""
        text = summary if os.path.basename(where) in summary else f"{where}: {summary}"
        self.graph, self.image, self.stage = None, None, "error"
        self.view.show_message(f"Nothing is shown: {text}")
        self.journal_banner.clear()
        self.plan_panel.set_graph(None, None)  # emits changed -> replan -> Commit disabled
        self.banner.show_message(text, details)
        self._update_title()
        self._set_status("")
        self.graph_shown.emit("error")

    def notify_error(self, summary: str, details: str) -> None:
        """An error that leaves the graph as it is (a libvirt host that cannot be listed)."""
        self.banner.show_message(summary, details)
        self._set_status(summary)

    def _on_source_shown(self, source: Source, graph: ImageGraph, focus: str, stage: str) -> None:
        if not shiboken6.isValid(self) or source is not self.source or self.jobs.running:
            return  # a closed window, an older source's late result, or a stage mid-job
        self.plan_panel.engine = source.engine
        self.show_graph(graph, focus, stage)
        self.qmp_session.on_shown(source)
        if isinstance(source, FileSource):
            waiting = {"headers": "scanning for siblings…", "scanned": "reading allocation…"}
            folders = sorted({os.path.dirname(layer.path) for layer in graph}
                             | set(source.scan_dirs))  # fmt: skip
            self._set_status(
                f"{len(graph)} images · " + waiting.get(stage, "allocation loaded")
                + " · scanned: " + ", ".join(folders)
            )  # fmt: skip

    def _on_source_failed(self, source: Source, summary: str, details: str) -> None:
        if not shiboken6.isValid(self) or source is not self.source:
            return
        if isinstance(source, FileSource):
            self.recent.remove(source.path)  # a file that fails to open leaves Open recent
            self.rebuild_recent_menu()
        words, original = humane_error(summary)
        self.show_load_error(source.where, words, "\n".join(t for t in (original, details) if t))

    def _set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_label.setToolTip(text)

    def _log(self, text: str) -> None:
        self.progress.append_log(text)

    # -- selection and preview ------------------------------------------------------------------

    def _on_view_top_chosen(self, path: str) -> None:
        self.plan_panel.choose_top(path)

    def _on_view_base_chosen(self, path: str) -> None:
        self.plan_panel.choose_base(path)

    def replan(self) -> None:
        """Plan the current request and show that very plan; a running job's plan stays."""
        if self.jobs.running:
            return
        request = self.plan_panel.request()
        self.plan, self.plan_error, sides = None, None, None
        if request is not None and self.graph is not None:
            # Both directions are planned for real: the preview's columns compare them, and a
            # switch then shows and runs the other column's very plan object.
            prepare = self.source.prepare if self.source is not None else make_plan
            counterpart = self.plan_panel.counterpart_request()
            sides = self.directions.plan(prepare, self.graph, request, counterpart)
            selected = sides.side(request.operation)
            self.plan, self.plan_error = selected.plan, selected.error
        else:
            self.directions.clear()
        if self.plan is not None:
            self.view.set_preview(self.plan.roles(), self.plan.top, self.plan.base)
        else:
            top = self.plan_panel.top() or self.image
            self.view.set_preview({}, top, self.plan_panel.base())
        self.preview.show_plan(self.plan, self.plan_error, sides)
        note = already_done(self.plan, self.marks) if self.plan else ""
        self.preview.set_note(note, self._leftovers(sides) if note else [])
        self.plan_panel.show_verdict(self.plan_error)
        self.commit_action.setEnabled(self.plan is not None)

    def _leftovers(self, sides: Sides | None) -> list[str]:
        """The layers that the same commit with DELETE would remove, when the planner allows it.

        Nothing depends on them then (the planner refuses DELETE otherwise), and the plan's
        verify step compares top with base before anything is removed.
        """
        selected = sides.side(sides.selected) if sides is not None else None
        if selected is None or selected.request is None or selected.request.delete:
            return []
        return list(selected.deletable)

    def _on_preview_delete_leftovers_clicked(self) -> None:
        self.plan_panel.delete.setChecked(True)  # the normal plan, previewed and confirmed

    def _on_rate_changed(self, value: int) -> None:
        """Mid-job, a live source changes the running job's bandwidth."""
        source = self.source
        if not self.jobs.running or source is None or not source.live_speed:
            return
        source.set_speed(value * MiB)
        self.progress.append_log(
            f"bandwidth change requested: {value} MiB/s" if value else
            "bandwidth change requested: unlimited"
        )  # fmt: skip

    # -- recent files, title, closing, drag and drop --------------------------------------------

    def _update_title(self) -> None:
        if self.graph is not None and self.source is not None:
            self.setWindowTitle(f"{self.source.title} — Backchain")
            self.setWindowFilePath(self.image or "")
        else:
            self.setWindowTitle("Backchain")
            self.setWindowFilePath("")

    def closeEvent(self, event: QCloseEvent) -> None:
        """Mid-job, ask first: the job is cancelled and waited for, never abandoned."""
        if self.jobs.running:
            event.ignore()
            self.job_panel.ask_to_quit(self._quit)
            return
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        self.demo_folders.remove_all()
        super().closeEvent(event)

    def _quit(self) -> None:
        self.close()

    def showEvent(self, event: QShowEvent) -> None:
        """Clamp again whenever the window moves to another screen."""
        super().showEvent(event)
        handle = self.windowHandle()
        if handle is not None and not self._watching_screen:
            self._watching_screen = True
            handle.screenChanged.connect(lambda _screen: clamp_to_screen(self))
        clamp_to_screen(self)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Never larger than the screen's available area, whatever a long text asked for."""
        super().resizeEvent(event)
        clamp_to_screen(self)
