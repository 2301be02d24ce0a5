"""Connect to QEMU…: the socket dialog, the live graph, ACTIVE, the ready question, bandwidth."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from backchain.core.errors import BackchainError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitRequest, OnReady
from backchain.ui.background import run_in_background

if TYPE_CHECKING:
    # qemu.qmp (and asyncio, ssl) are imported on connecting, not when the window opens.
    from backchain.engines.qmp.job import QmpJobControl
    from backchain.ui.job_worker import JobWorker
    from backchain.ui.main_window import MainWindow

MiB = 1 << 20


class QmpConnectDialog(QDialog):
    """Asks for a QMP address (a unix socket path or host:port) and, optionally, a device."""

    def __init__(self, parent: QWidget | None = None, address: str = "", device: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to QEMU")
        self.address = QLineEdit(address)
        self.address.setPlaceholderText("/run/vm/qmp.sock or localhost:4444")
        self.address.setAccessibleName("QMP socket")
        self.address.setToolTip(
            "The QMP socket of the running QEMU (-qmp unix:PATH,server=on,wait=off), "
            "or host:port for a TCP monitor."
        )
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        self.device = QLineEdit(device)
        self.device.setPlaceholderText("optional: vd0, or a root node name")
        self.device.setAccessibleName("Device")
        self.device.setToolTip("Which disk to show when the VM has several.")
        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("&Socket:", row)
        form.addRow("&Device:", self.device)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(520, self.sizeHint().height())

    def _on_browse_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "QMP socket", os.path.dirname(self.value()))
        if path:
            self.address.setText(path)

    def value(self) -> str:
        """The address as typed, trimmed."""
        return self.address.text().strip()

    def device_value(self) -> str | None:
        """The device, or None for the only (or first attached) chain."""
        return self.device.text().strip() or None


class OnlineSession(QObject):
    """The window's online mode: reads the live graph off the GUI thread, and steers jobs."""

    connected = Signal(str)
    """The live graph of this address is on screen."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.address = ""
        self.device: str | None = None
        self._control: QmpJobControl | None = None
        self.ready_box: QMessageBox | None = None
        self.action = QAction("Connect to &QEMU…", window)
        self.action.setToolTip("Show the live chain of a running VM through its QMP socket")
        self.action.triggered.connect(self.ask)
        window.add_connect_action(self.action)
        self.note = QLabel()
        self.note.setObjectName("onlineNote")
        self.note.setWordWrap(True)
        self.note.setAccessibleName("Online note")
        self.note.hide()
        panel = window.plan_panel
        layout = panel.layout()
        assert layout is not None  # the plan panel lays out its own widgets
        layout.addWidget(self.note)
        panel.request_filter = self._adjust
        panel.changed.connect(self._on_panel_changed)
        panel.rate.valueChanged.connect(self._on_rate_changed)
        window.jobs.job_started.connect(self._on_jobs_job_started)

    @property
    def control(self) -> QmpJobControl | None:
        """The running job's handle, while the window is online."""
        connection = self.window.connection
        return self._control if connection is not None and connection is self._control else None

    def ask(self) -> None:
        """Connect to QEMU…: ask for the socket, then load."""
        dialog = QmpConnectDialog(self.window, self.address, self.device or "")
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.value():
            self.connect_to(dialog.value(), dialog.device_value())

    def connect_to(self, address: str, device: str | None = None) -> None:
        """Read the live graph of ``address`` in the background, then show it."""
        self.address, self.device = address, device
        self.window.status_label.setText(f"Reading the live graph from {address}…")

        def work(_report: object) -> tuple[ImageGraph, str]:  # runs in a pool thread
            from backchain.engines.qmp.graph import read_qmp_graph, root_for

            graph = read_qmp_graph(address)
            return graph, root_for(graph, device).path

        run_in_background(work, on_result=self._on_loaded, on_error=self._on_failed)

    def _on_loaded(self, result: object) -> None:
        from backchain.engines.qmp.job import QmpJobControl

        assert isinstance(result, tuple)
        graph: ImageGraph = result[0]
        root: str = result[1]
        window = self.window
        self._control = QmpJobControl(self.address)
        window.connection = self._control
        window.reloader = lambda: self.connect_to(self.address, self.device)
        window.plan_panel.engine = "qmp"
        window.show_graph(graph, root, "extents")
        label = graph.layer(root).extra.get("device") or graph.layer(root).node_name
        window.status_label.setText(f"Live: {len(graph)} nodes of {label} at {self.address}")
        window.setWindowTitle(f"{label} on {self.address} — Backchain")
        self.connected.emit(self.address)

    def _on_failed(self, error: BaseException) -> None:
        summary = error.summary if isinstance(error, BackchainError) else str(error)
        details = error.details if isinstance(error, BackchainError) else ""
        self.window.show_load_error(self.address, summary, details)

    # -- planning -------------------------------------------------------------------------------

    def _is_online(self) -> bool:
        return self.window.plan_panel.engine == "qmp"

    def _adjust(self, request: CommitRequest) -> CommitRequest:
        """Online, selecting the running VM's active layer as top means an active commit."""
        if not self._is_online():
            return request
        top = request.top or request.image
        return replace(request, active=top == request.image)

    def _on_panel_changed(self) -> None:
        request = self.window.plan_panel.request() if self._is_online() else None
        if request is not None and request.active:
            self.note.setText(
                "ACTIVE is on: top is the layer the running VM writes to. Once base has "
                "caught up you choose Pivot (base becomes active) or Keep overlay."
            )
            self.note.show()
        else:
            self.note.hide()

    # -- running --------------------------------------------------------------------------------

    def _on_jobs_job_started(self, _plan: object) -> None:
        worker = self.window.jobs.worker
        if worker is not None and self.control is not None:
            worker.ready_reached.connect(self._on_worker_ready_reached)

    def _on_worker_ready_reached(self) -> None:
        worker = self.window.jobs.worker
        if worker is None:
            return
        box = QMessageBox(self.window)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Active commit ready")
        box.setText("Base has caught up with the active layer. What now?")
        box.setInformativeText(
            "Pivot: the VM switches to base, and the merged layers are no longer used.\n"
            "Keep overlay: the VM stays on top; base keeps a consistent copy."
        )
        pivot = box.addButton("Pivot to base", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep overlay", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(pivot)
        box.buttonClicked.connect(lambda button: self._answer(worker, button, pivot, keep))
        self.ready_box = box
        box.open()

    def _answer(self, worker: JobWorker, button: object, pivot: object, keep: object) -> None:
        self.ready_box = None
        if button is pivot:
            worker.choose(OnReady.PIVOT)
        elif button is keep:
            worker.choose(OnReady.KEEP_OVERLAY)

    def _on_rate_changed(self, value: int) -> None:
        control = self.control
        if control is not None and self.window.jobs.running:
            control.set_speed(value * MiB)
            self.window.progress.append_log(
                f"bandwidth change requested: {value} MiB/s" if value else
                "bandwidth change requested: unlimited"
            )  # fmt: skip


def install(window: MainWindow) -> OnlineSession:
    """Add Connect → Connect to QEMU… to the window."""
    session = OnlineSession(window)
    window.qmp_session = session  # type: ignore[attr-defined]
    return session
