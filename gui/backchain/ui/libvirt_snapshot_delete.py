"""Delete snapshot…: a domain's libvirt snapshot, previewed, confirmed, run and re-read."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backchain.core.model import CommitPlan, OnReady, Step
from backchain.engines.libvirt.snapshot_delete import SnapshotDeletePlan
from backchain.engines.progress import CancelToken
from backchain.ui.background import run_in_background
from backchain.ui.confirm import bytes_at_risk


class _Sink:
    """A ProgressSink that hands every event to the GUI thread through ``report``."""

    def __init__(self, report: Callable[[Any], None]) -> None:
        self.report = report

    def started(self, plan: CommitPlan) -> None:
        """Nothing to show before the first disk reports."""

    def step_started(self, step: Step) -> None:
        self.report(("log", f"{step.kind.value} …"))

    def advanced(self, done: int, total: int, phase: str) -> None:
        self.report(("progress", (done, total, phase)))

    def logged(self, text: str) -> None:
        self.report(("log", text))

    def ready(self) -> OnReady:
        return OnReady.PIVOT  # libvirt pivots by itself during a snapshot deletion

    def finished(self, ok: bool, message: str) -> None:
        self.report(("finished", (ok, message)))


def confirm_snapshot_delete(plan: SnapshotDeletePlan, parent: QWidget | None = None) -> bool:
    """Ask, with the preview's effects; Cancel is the default when a sibling's bytes are at risk."""
    box = QMessageBox(parent)
    box.setWindowTitle("Confirm snapshot deletion")
    risky = any(m.plan is not None and bytes_at_risk(m.plan) for m in plan.merges)
    box.setIcon(QMessageBox.Icon.Warning if plan.merges else QMessageBox.Icon.Question)
    box.setText(f"Delete snapshot {html.escape(plan.snapshot)} of {html.escape(plan.domain)}?")
    box.setInformativeText("<br>".join(html.escape(line) for line in plan.lines()[1:]))
    box.setDetailedText(plan.job().shell_script())
    delete = box.addButton("Delete snapshot", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel if risky else delete)
    box.setEscapeButton(cancel)
    box.exec()
    return box.clickedButton() is delete


class SnapshotDeleteDialog(QDialog):
    """Lists a domain's snapshots, previews deleting one, and runs it through the runner."""

    deleted = Signal(str)
    """The outcome, once the deletion has ended (successfully or not)."""

    def __init__(
        self, uri: str, domain: str, parent: QWidget | None = None, chosen: str | None = None
    ) -> None:
        super().__init__(parent)
        self.uri, self.domain = uri, domain
        self.chosen = chosen
        """The snapshot to preview first (a layer card's "Delete snapshot NAME…")."""
        self.plan: SnapshotDeletePlan | None = None
        self.token = CancelToken()
        self.running = False
        self.message = ""
        self.confirm: Callable[[SnapshotDeletePlan], bool] = lambda plan: confirm_snapshot_delete(
            plan, self
        )
        self.setWindowTitle(f"Delete a snapshot of {domain}")
        self.choice = QComboBox()
        self.choice.setAccessibleName("Snapshot")
        self.choice.currentIndexChanged.connect(lambda _i: self.preview())
        self.intro = QLabel(f"Reading the snapshots of <b>{html.escape(domain)}</b>…")
        self.intro.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setAccessibleName("What deleting the snapshot does")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName("Progress of the snapshot deletion")
        self.bar.hide()
        self.outcome = QLabel()
        self.outcome.setWordWrap(True)
        self.outcome.setAccessibleName("How the deletion ended")
        self.buttons = QDialogButtonBox()
        self.delete_button = QPushButton("Delete snapshot…")
        self.delete_button.setEnabled(False)
        self.delete_button.clicked.connect(self.start)
        self.buttons.addButton(self.delete_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.close_button.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self.intro, self.choice, self.text, self.bar, self.outcome, self.buttons):
            layout.addWidget(widget)
        self.setMinimumWidth(640)
        self.reread()

    def reread(self) -> None:
        """List the domain's snapshots again, off the GUI thread."""
        from backchain.engines.libvirt.snapshot_xml import snapshot_label
        from backchain.engines.libvirt.snapshots import read_snapshots

        uri, domain = self.uri, self.domain
        run_in_background(
            lambda _report: [(s.name, snapshot_label(s)) for s in read_snapshots(uri, domain)],
            on_result=self._on_listed,
            on_error=lambda error: self.intro.setText(f"Cannot read the snapshots: {error}"),
        )

    def _on_listed(self, found: list[tuple[str, str]]) -> None:
        self.choice.blockSignals(True)
        self.choice.clear()
        for name, label in found:
            self.choice.addItem(label, name)
        index = self.choice.findData(self.chosen) if self.chosen else -1
        if index >= 0:
            self.choice.setCurrentIndex(index)
        self.chosen = None  # after a deletion, the re-read list starts at its first entry
        self.choice.blockSignals(False)
        count = len(found)
        self.intro.setText(f"<b>{html.escape(self.domain)}</b> has {count} snapshot"
                           f"{'' if count == 1 else 's'}." if count else
                           f"<b>{html.escape(self.domain)}</b> has no snapshots.")  # fmt: skip
        self.preview()

    def preview(self) -> None:
        """Plan deleting the chosen snapshot, off the GUI thread; libvirt's refusal is shown."""
        from backchain.engines.libvirt.snapshots import plan_snapshot_delete

        name = self.choice.currentData()
        self.plan = None
        self.delete_button.setEnabled(False)
        if name is None or self.running:
            self.text.setPlainText("")
            return
        uri, domain = self.uri, self.domain
        self.text.setPlainText(f"Planning the deletion of {name}…")
        run_in_background(
            lambda _report: plan_snapshot_delete(uri, domain, str(name)),
            on_result=lambda plan: self._on_planned(str(name), plan),
            on_error=lambda error: self._on_refused(str(name), error),
        )

    def _on_planned(self, name: str, plan: SnapshotDeletePlan) -> None:
        if self.choice.currentData() != name or self.running:
            return  # another snapshot was chosen meanwhile
        self.plan = plan
        self.text.setPlainText("\n".join(plan.lines()))
        self.delete_button.setEnabled(True)

    def _on_refused(self, name: str, error: BaseException) -> None:
        if self.choice.currentData() == name:
            self.text.setPlainText(f"libvirt would refuse to delete {name}:\n{error}")

    def start(self) -> None:
        """Confirm, then run the plan shown through the runner."""
        from backchain.engines.runner import run_plan

        plan = self.plan
        if plan is None or self.running or not self.confirm(plan):
            return
        job, target, token = plan.job(), plan.target, self.token
        self.running = True
        self.delete_button.setEnabled(False)
        self.choice.setEnabled(False)
        self.bar.show()
        self.bar.setFormat("Deleting %p%")
        run_in_background(
            lambda report: run_plan(job, _Sink(report), token, target),  # runs in a pool thread
            on_stage=self._on_stage,
            on_result=lambda _none: self._on_done(),
            on_error=lambda error: self._on_done(error),
        )

    def _on_stage(self, event: tuple[str, Any]) -> None:
        kind, payload = event
        if kind == "progress":
            done, total, phase = payload
            self.bar.setValue(int(min(1.0, done / total) * 1000) if total > 0 else 0)
            self.bar.setFormat(f"{phase}: %p%")
        elif kind == "log":
            self.text.appendPlainText(str(payload))
        elif kind == "finished":
            ok, message = payload
            self.bar.setValue(1000 if ok else self.bar.value())
            self.bar.setFormat("done" if ok else "failed")
            self.message = str(message)

    def _on_done(self, error: BaseException | None = None) -> None:
        self.running = False
        self.choice.setEnabled(True)
        if error is not None:
            self.message = f"Failed: {error}"
        self.outcome.setText(self.message)
        self.deleted.emit(self.message)
        self.reread()  # the snapshots as libvirt now has them

    def reject(self) -> None:
        """Closing while libvirt deletes only asks to cancel (it cannot stop once started)."""
        if self.running:
            self.token.cancel()
            return
        super().reject()
