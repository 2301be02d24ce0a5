"""One libvirt disk in the window: its plan, re-point for shut-off domains, speed, synchronising."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QCheckBox

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest
from backchain.engines.base import LibvirtTarget
from backchain.engines.registry import make_plan
from backchain.ui.background import run_in_background

if TYPE_CHECKING:
    from backchain.engines.libvirt.read import DiskInfo
    from backchain.ui.main_window import MainWindow

MiB = 1 << 20
SYNC_TEXT = "Synchronising: base is catching up with the VM's latest writes"


class DiskSession(QObject):
    """Keeps the window's plan, job and bandwidth control on the libvirt disk that is open."""

    speed_changed = Signal(int)
    """virDomainBlockJobSetSpeed returned for this many bytes per second."""
    speed_failed = Signal(str)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.target: LibvirtTarget | None = None
        self.info: DiskInfo | None = None
        self.running = False
        self.repoint = QCheckBox("Re-point the disk to base afterwards (virDomainDefineXML)")
        self.repoint.setAccessibleName("Re-point disk to base")
        self.repoint.setToolTip(
            "The domain is shut off: once top (the disk's active layer) is committed, change "
            "the domain's disk source to base. This is the offline equivalent of a pivot."
        )
        self.repoint.setChecked(True)
        self.repoint.hide()
        self.repoint.toggled.connect(self._on_repoint_toggled)
        panel = window.plan_panel
        layout = panel.layout()
        assert layout is not None  # the plan panel lays out its own widgets
        layout.addWidget(self.repoint)
        panel.rate.valueChanged.connect(self._on_rate_changed)
        window.jobs.job_started.connect(self._on_jobs_job_started)

    @property
    def active(self) -> bool:
        """Whether the window shows this session's disk (not an image or a QMP graph)."""
        return self.target is not None and self.window.connection == self.target

    def show(self, target: LibvirtTarget, graph: ImageGraph, info: DiskInfo, running: bool) -> None:
        """Put the disk's graph in the window; its plans come from the libvirt engine's rules."""
        from backchain.engines.libvirt.engine import active_layer

        window = self.window
        self.target, self.info, self.running = target, info, running
        window.connection = target
        window.planner = self.plan
        # Running: the request asks for virDomainBlockCommit (the panel's filter sets ACTIVE).
        window.plan_panel.engine = "libvirt" if running else "qemu-img"
        self.repoint.setVisible(not running)
        window.show_graph(graph, active_layer(graph), "extents")

    def plan(self, graph: ImageGraph, request: CommitRequest) -> CommitPlan:
        """The window's planner: plan_for_graph for this disk, make_plan for anything else."""
        from backchain.engines.libvirt.engine import plan_for_graph

        if not self.active or self.target is None or self.info is None:
            return make_plan(graph, request)
        repoint = not self.running and self.repoint.isChecked()
        # The window has no ACTIVE control: let the engine decide, so its plan also says why.
        request = replace(request, active=False)
        return plan_for_graph(self.target, graph, self.info, self.running, request,
                              repoint=repoint)  # fmt: skip

    def _on_repoint_toggled(self, _checked: bool) -> None:
        if self.active:
            self.window.replan()

    # -- while the job runs -----------------------------------------------------------------------

    def _running_commit(self) -> bool:
        worker = self.window.jobs.worker
        return (
            self.active
            and worker is not None
            and bool(worker.plan.steps)
            and worker.plan.steps[0].kind == "virDomainBlockCommit"
        )

    def _on_rate_changed(self, value: int) -> None:
        """Bandwidth changed while a running domain's commit goes on: virDomainBlockJobSetSpeed."""
        from backchain.engines.libvirt.engine import set_speed

        worker = self.window.jobs.worker
        if not self._running_commit() or self.target is None or worker is None:
            return
        target, speed = self.target, value * MiB
        disk = str((worker.plan.steps[0].call or {}).get("disk", target.disk))
        self.window.progress.append_log(
            f"bandwidth change requested: {value} MiB/s" if value else
            "bandwidth change requested: unlimited"
        )  # fmt: skip
        run_in_background(
            lambda _report: set_speed(target.uri, target.domain, disk, speed),  # pool thread
            on_result=lambda _none: self._on_speed_set(speed),
            on_error=self._on_speed_failed,
        )

    def _on_speed_set(self, speed: int) -> None:
        if shiboken6.isValid(self):  # the window may have closed meanwhile
            self.speed_changed.emit(speed)

    def _on_speed_failed(self, error: BaseException) -> None:
        if not shiboken6.isValid(self):
            return
        self.window.progress.append_log(f"bandwidth change failed: {error}")
        self.speed_failed.emit(str(error))

    def _on_jobs_job_started(self, _plan: object) -> None:
        worker = self.window.jobs.worker
        if worker is None or not self._running_commit():
            return
        # Connect after the window's own progress slot (start_job connects it once this signal
        # has returned), so that this one has the last word on the bar.
        QTimer.singleShot(0, lambda: worker.progressed.connect(self.show_progress))

    def show_progress(self, done: int, total: int, phase: str) -> None:
        """Show libvirt's synchronising phase as a busy bar, not as a bar stuck at 99%."""
        bar, status = self.window.progress.bar, self.window.progress.status
        if phase == "synchronising":
            bar.setRange(0, 0)
            bar.setFormat("Synchronising")
            status.setText(SYNC_TEXT)
            return
        if bar.maximum() == 0:
            bar.setRange(0, 1000)
            bar.setValue(int(min(1.0, done / total) * 1000) if total > 0 else 0)
