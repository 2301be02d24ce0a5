"""Collapse this VM's chains: every disk's plan, a progress row per disk, and a summary."""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backchain.core.errors import BackchainError
from backchain.core.model import CommitPlan, OnReady, Step
from backchain.engines.libvirt.collapse import plan_collapse, run_collapse, summary
from backchain.engines.progress import CancelToken
from backchain.engines.runner import run_plan
from backchain.ui.background import run_in_background
from backchain.ui.text import human_bytes


class _RowSink:
    """A ProgressSink for one disk that hands every event to the GUI thread through ``report``."""

    def __init__(self, disk: str, report: Any) -> None:
        self.disk = disk
        self.report = report  # run_in_background's report: queued onto the GUI thread
        self.outcome: tuple[bool, str] | None = None

    def started(self, plan: CommitPlan) -> None:
        self.report((self.disk, "started", plan.top))

    def step_started(self, step: Step) -> None:
        self.report((self.disk, "step", step.kind))

    def advanced(self, done: int, total: int, phase: str) -> None:
        self.report((self.disk, "progress", (done, total, phase)))

    def logged(self, text: str) -> None:
        self.report((self.disk, "log", text))

    def ready(self) -> OnReady:
        # No question per disk: the choice made in the dialog is in each plan.
        return OnReady.ASK

    def finished(self, ok: bool, message: str) -> None:
        self.outcome = (ok, message)
        self.report((self.disk, "finished", (ok, message)))


class DiskRow:
    """One disk's line: its plan in words, a progress bar and where it stands."""

    def __init__(self, disk: str, plan: CommitPlan | BackchainError) -> None:
        self.disk = disk
        self.plan = plan
        self.events: list[tuple[int, int, str]] = []
        self.name = QLabel(f"<b>{disk}</b>")
        self.what = QLabel(describe(plan))
        self.what.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setAccessibleName(f"Progress of {disk}")
        self.bar.setRange(0, 1000)
        self.bar.setFormat("waiting" if isinstance(plan, CommitPlan) else "skipped")
        self.status = QLabel()
        self.status.setWordWrap(True)

    def progressed(self, done: int, total: int, phase: str) -> None:
        """Move this disk's bar; synchronising has no percentage (libvirt holds cur at end-1)."""
        self.events.append((done, total, phase))
        if phase == "synchronising":
            self.bar.setRange(0, 0)
            self.bar.setFormat("Synchronising")
            return
        self.bar.setRange(0, 1000)
        share = min(1.0, done / total) if total > 0 else 0.0
        self.bar.setValue(int(share * 1000))
        self.bar.setFormat(f"{phase.capitalize()}: {share * 100:.0f}%")

    def finished(self, ok: bool, message: str) -> None:
        """The disk's outcome."""
        self.bar.setRange(0, 1000)
        if ok:
            self.bar.setValue(1000)
        self.bar.setFormat("done" if ok else "failed")
        self.status.setText(message)


def describe(plan: CommitPlan | BackchainError) -> str:
    """One disk's plan in a line, or why it has none."""
    if isinstance(plan, BackchainError):
        return f"not committed: {plan.summary}"
    name = os.path.basename
    text = (
        f"{name(plan.top)} → {name(plan.base)}: {len(plan.merged)} layer(s), "
        f"{human_bytes(plan.bytes_to_copy)} to copy"
    )
    if plan.steps and plan.steps[0].kind == "virDomainGetState":
        text += ", offline (shut off)"
        if any(step.kind == "virDomainDefineXML" for step in plan.steps):
            text += ", then the disk is re-pointed to base"
    elif plan.active_commit:
        text += ", then " + ("pivot" if plan.request.on_ready is OnReady.PIVOT else "keep overlay")
    return text


class CollapseDialog(QDialog):
    """Plans every disk of a domain, shows the plans, and runs exactly those plans on request."""

    planned = Signal()
    collapsed = Signal(str)
    """The summary, once every disk has ended."""

    def __init__(self, uri: str, domain: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.uri, self.domain = uri, domain
        self.rows: dict[str, DiskRow] = {}
        self.plans: list[tuple[str, CommitPlan | BackchainError]] = []
        self.token = CancelToken()
        self.running = False
        self.summary = ""
        self.setWindowTitle(f"Collapse {domain}'s chains")
        self.choice = QComboBox()
        self.choice.addItem("Pivot: each disk then uses its base", OnReady.PIVOT)
        self.choice.addItem("Keep overlay: base gets a consistent copy", OnReady.KEEP_OVERLAY)
        self.choice.setAccessibleName("When a running disk is ready")
        self.choice.currentIndexChanged.connect(lambda _i: self.replan())
        self.intro = QLabel(
            f"Commit every disk of <b>{domain}</b> into its bottom image, one disk after another."
        )
        self.intro.setWordWrap(True)
        self.grid = QGridLayout()
        self.grid.setColumnStretch(1, 1)
        self.summary_box = QPlainTextEdit()
        self.summary_box.setReadOnly(True)
        self.summary_box.setAccessibleName("Collapse summary")
        self.summary_box.setMaximumHeight(90)
        self.summary_box.hide()
        self.buttons = QDialogButtonBox()
        self.start_button = QPushButton("Collapse")
        self.start_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.buttons.addButton(self.start_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.close_button.clicked.connect(self._on_close_clicked)
        form = QFormLayout()
        form.addRow("Running disks, when ready:", self.choice)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addLayout(self.grid)
        layout.addWidget(self.summary_box)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(640)
        self.replan()

    def replan(self) -> None:
        """Plan every disk off the GUI thread (shut-off disks are re-pointed to base)."""

        uri, domain = self.uri, self.domain
        on_ready = OnReady(self.choice.currentData())
        self.start_button.setEnabled(False)
        self.intro.setText(f"Planning every disk of <b>{domain}</b>…")
        run_in_background(
            lambda _report: plan_collapse(uri, domain, on_ready=on_ready, repoint=True),
            on_result=self._on_planned,
            on_error=lambda error: self.intro.setText(f"Cannot plan {domain}: {error}"),
        )

    def _on_planned(self, plans: list[tuple[str, CommitPlan | BackchainError]]) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.rows = {}
        for line, (disk, plan) in enumerate(plans):
            row = DiskRow(disk, plan)
            self.rows[disk] = row
            # One block per disk: what will happen, its bar, then where it stands.
            self.grid.addWidget(row.name, line * 3, 0)
            self.grid.addWidget(row.what, line * 3, 1)
            self.grid.addWidget(row.bar, line * 3 + 1, 1)
            self.grid.addWidget(row.status, line * 3 + 2, 1)
        self.plans = plans
        runnable = sum(1 for _disk, plan in plans if isinstance(plan, CommitPlan))
        self.intro.setText(
            f"Commit every disk of <b>{self.domain}</b> into its bottom image, all at once "
            f"(running disks pivot together once all are ready): {runnable} of {len(plans)} "
            "disks can be committed."
        )
        self.start_button.setEnabled(runnable > 0)
        self.adjustSize()
        self.planned.emit()

    def start(self) -> None:
        """Run the plans shown, each disk reporting to its own row."""

        uri, domain, plans, token = self.uri, self.domain, list(self.plans), self.token
        self.running = True
        self.start_button.setEnabled(False)
        self.choice.setEnabled(False)
        self.close_button.setText("Cancel")

        def work(report: Any) -> Any:  # runs in a pool thread
            return run_collapse(uri, domain, plans, lambda d: _RowSink(d, report), token, run_plan)

        run_in_background(work, on_stage=self._on_stage, on_result=self._on_done,
                          on_error=lambda error: self._on_done(error))  # fmt: skip

    def _on_stage(self, event: tuple[str, str, Any]) -> None:
        disk, kind, payload = event
        row = self.rows.get(disk)
        if row is None:
            return
        if kind == "progress":
            row.progressed(*payload)
        elif kind == "step":
            row.status.setText(str(payload))
        elif kind == "finished":
            row.finished(*payload)

    def _on_done(self, results: Any) -> None:

        self.running = False
        if isinstance(results, BaseException):
            self.summary = f"{self.domain}: collapse stopped: {results}"
        else:
            for result in results:
                row = self.rows.get(result.disk)
                if row is not None and row.bar.format() not in ("done", "failed"):
                    row.finished(result.ok, result.message)
            self.summary = summary(self.domain, results)
        self.summary_box.setPlainText(self.summary)
        self.summary_box.show()
        self.close_button.setText("Close")
        self.adjustSize()
        self.collapsed.emit(self.summary)

    def _on_close_clicked(self) -> None:
        if self.running:
            self.token.cancel()
            return
        self.reject()

    def reject(self) -> None:
        """Closing while disks are committed cancels instead (the job is never abandoned)."""
        if self.running:
            self.token.cancel()
            return
        super().reject()
