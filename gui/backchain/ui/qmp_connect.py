"""Connect to QEMU…: the socket dialog, the live graph, ACTIVE, the ready question, bandwidth."""

from __future__ import annotations

import os
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
    QPushButton,
    QWidget,
)

from backchain.ui.plan_panel import PlanPanel
from backchain.ui.sources import ConnectHost
from backchain.ui.sources.qmp import QmpSource

if TYPE_CHECKING:
    # qemu.qmp (with asyncio and ssl) is imported on connecting, not when the window opens.
    from backchain.engines.qmp.job import QmpJobControl


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
        # A layout row gets no buddy, so the label would show "&Socket:" literally.
        socket_label = QLabel("&Socket:")
        socket_label.setBuddy(self.address)
        form.addRow(socket_label, row)
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
    """Connect → Connect to QEMU…: makes QmpSources, and says when ACTIVE is on."""

    connected = Signal(str)
    """The live graph of this address is on screen."""

    def __init__(self, parent: QWidget, host: ConnectHost, plan_panel: PlanPanel) -> None:
        super().__init__(parent)
        self._parent, self._host, self._panel = parent, host, plan_panel
        self.address = ""
        self.device: str | None = None
        self.action = QAction("Connect to &QEMU…", self)
        self.action.setToolTip("Show the live chain of a running VM through its QMP socket")
        self.action.triggered.connect(self.ask)
        host.add_connect_action(self.action)
        self.note = QLabel()
        self.note.setObjectName("onlineNote")
        self.note.setWordWrap(True)
        self.note.setAccessibleName("Online note")
        self.note.hide()
        plan_panel.add_option(self.note)
        plan_panel.changed.connect(self._on_panel_changed)

    @property
    def control(self) -> QmpJobControl | None:
        """The running job's handle, while the window is online."""
        source = self._host.current_source()
        return source.control if isinstance(source, QmpSource) else None

    def ask(self) -> None:
        """Connect to QEMU…: ask for the socket, then load."""
        dialog = QmpConnectDialog(self._parent, self.address, self.device or "")
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.value():
            self.connect_to(dialog.value(), dialog.device_value())

    def connect_to(self, address: str, device: str | None = None) -> None:
        """Make the live graph of ``address`` the window's source; it is read in the background."""
        self.address, self.device = address, device
        self._host.open_source(QmpSource(address, device, self._host.events))

    def on_shown(self, source: object) -> None:
        """The window put a source's graph on screen; announce ours."""
        if isinstance(source, QmpSource):
            self.connected.emit(source.address)

    def _on_panel_changed(self) -> None:
        online = isinstance(self._host.current_source(), QmpSource)
        request = self._panel.request() if online else None
        if request is not None and request.active:
            self.note.setText(
                "ACTIVE is on: top is the layer the running VM writes to. Once base has "
                "caught up you choose Pivot (base becomes active) or Keep overlay."
            )
            self.note.show()
        else:
            self.note.hide()
