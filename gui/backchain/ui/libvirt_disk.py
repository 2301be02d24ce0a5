"""The live controls of an open libvirt disk: re-point when shut off, speed, synchronising."""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QCheckBox

from backchain.core.model import CommitRequest, StepKind
from backchain.engines.libvirt.engine import LibvirtTarget, set_speed
from backchain.ui.background import run_in_background
from backchain.ui.job_worker import JobController
from backchain.ui.libvirt_guard import GuardBox
from backchain.ui.plan_panel import PlanPanel
from backchain.ui.progress_panel import ProgressPanel
from backchain.ui.sources import Source, SourceEvents
from backchain.ui.sources.libvirt import LibvirtSource

MiB = 1 << 20
SYNC_TEXT = "Synchronising: base is catching up with the VM's latest writes"


class DiskSession(QObject):
    """Makes LibvirtSources and keeps the re-point option, speed and busy bar on their jobs."""

    speed_changed = Signal(int)
    """virDomainBlockJobSetSpeed returned for this many bytes per second."""
    speed_failed = Signal(str)

    def __init__(
        self,
        parent: QObject,
        plan_panel: PlanPanel,
        jobs: JobController,
        progress: ProgressPanel,
        current_source: Callable[[], Source | None],
        replan: Callable[[], None],
    ) -> None:
        super().__init__(parent)
        self._jobs, self._progress = jobs, progress
        self._current, self._replan = current_source, replan
        self.repoint = QCheckBox("Re-point the disk to base afterwards (virDomainDefineXML)")
        self.repoint.setAccessibleName("Re-point disk to base")
        self.repoint.setToolTip(
            "The domain is shut off: once top (the disk's active layer) is committed, change "
            "the domain's disk source to base. This is the offline equivalent of a pivot."
        )
        self.repoint.setChecked(True)
        self.repoint.hide()
        self.repoint.toggled.connect(self._on_repoint_toggled)
        plan_panel.add_option(self.repoint)
        self._plan_panel = plan_panel
        self.guard = GuardBox()
        self.guard.drop_toggled.connect(self._on_guard_drop_toggled)
        plan_panel.add_option(self.guard)
        jobs.job_started.connect(self._on_jobs_job_started)

    @property
    def source(self) -> LibvirtSource | None:
        """The libvirt disk on screen, if the window shows one."""
        source = self._current()
        return source if isinstance(source, LibvirtSource) else None

    @property
    def target(self) -> LibvirtTarget | None:
        """The disk on screen."""
        source = self.source
        return source.target if source is not None else None

    @property
    def active(self) -> bool:
        """Whether the window shows a libvirt disk (not an image or a QMP graph)."""
        return self.source is not None

    def make_source(self, target: LibvirtTarget, events: SourceEvents) -> LibvirtSource:
        """A source for ``target`` whose plans read this session's re-point option."""
        return LibvirtSource(target, events, self.repoint.isChecked, self._set_speed,
                             self._on_source_read, drop_metadata=self.guard.drop.isChecked,
                             on_guard=self._on_source_guard)  # fmt: skip

    def _on_source_guard(self, request: CommitRequest, names: tuple[str, ...]) -> None:
        """The snapshots the selected request breaks (a probe of another request is ignored)."""
        if request == self._plan_panel.request():
            self.guard.show_names(names)

    def _on_guard_drop_toggled(self, _checked: bool) -> None:
        if self.active:
            self._replan()

    def _on_source_read(self, source: LibvirtSource) -> None:
        self.repoint.setVisible(not source.running)

    def hide_controls(self) -> None:
        """Another source took the window."""
        self.repoint.hide()
        self.guard.show_names(())

    def _on_repoint_toggled(self, _checked: bool) -> None:
        if self.active:
            self._replan()

    # -- while the job runs -----------------------------------------------------------------------

    def _running_commit(self) -> bool:
        worker = self._jobs.worker
        return (
            self.active
            and worker is not None
            and bool(worker.plan.steps)
            and worker.plan.steps[0].kind == StepKind.LIBVIRT_COMMIT
        )

    def _set_speed(self, target: LibvirtTarget, speed: int) -> None:
        """Bandwidth changed while a running domain's commit goes on: virDomainBlockJobSetSpeed."""
        worker = self._jobs.worker
        if not self._running_commit() or worker is None:
            return
        disk = str((worker.plan.steps[0].call or {}).get("disk", target.disk))
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
        self._progress.append_log(f"bandwidth change failed: {error}")
        self.speed_failed.emit(str(error))

    def _on_jobs_job_started(self, _plan: object) -> None:
        worker = self._jobs.worker
        if worker is None or not self._running_commit():
            return
        # Connect after the window's own progress slot (start_job connects it once this signal
        # has returned), so that this one has the last word on the bar.
        QTimer.singleShot(0, lambda: worker.progressed.connect(self.show_progress))

    def show_progress(self, done: int, total: int, phase: str) -> None:
        """Show libvirt's synchronising phase as a busy bar, not as a bar stuck at 99%."""
        bar, status = self._progress.bar, self._progress.status
        if phase == "synchronising":
            bar.setRange(0, 0)
            bar.setFormat("Synchronising")
            status.setText(SYNC_TEXT)
            return
        if bar.maximum() == 0:
            bar.setRange(0, 1000)
            bar.setValue(int(min(1.0, done / total) * 1000) if total > 0 else 0)
