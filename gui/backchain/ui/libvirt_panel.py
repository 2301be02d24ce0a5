"""Connect to libvirt…: a side tree of host → domain → disk; open a disk, collapse a domain."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from backchain.core.errors import BackchainError
from backchain.core.model import CommitRequest
from backchain.ui.background import run_in_background
from backchain.ui.libvirt_collapse import CollapseDialog
from backchain.ui.libvirt_disk import DiskSession

if TYPE_CHECKING:
    from backchain.ui.main_window import MainWindow

DEFAULT_URI = "qemu:///system"
_ROLE = Qt.ItemDataRole.UserRole


def binding_problem() -> str | None:
    """What to install when libvirt cannot be imported, or None when it can.

    Importing, not just finding, the module: the AppImage carries the binding, but it loads the
    host's libvirt.so.0, which may be missing or too old.
    """
    from backchain.engines.libvirt.read import require_libvirt

    try:
        require_libvirt()
    except BackchainError as err:
        return str(err)
    return None


class LibvirtConnectDialog(QDialog):
    """Asks for a libvirt URI, qemu:///system by default."""

    def __init__(self, parent: QWidget | None = None, uri: str = DEFAULT_URI) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to libvirt")
        self.uri = QLineEdit(uri or DEFAULT_URI)
        self.uri.setAccessibleName("libvirt URI")
        self.uri.setToolTip(
            "qemu:///system for this machine; qemu+ssh://user@host/system?keyfile=PATH for "
            "another host (add &no_verify=1 to skip the host key check)"
        )
        hint = QLabel("Examples: qemu:///system, qemu+ssh://root@host/system?keyfile=~/.ssh/id")
        hint.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("URI:", self.uri)
        form.addRow(hint)
        form.addRow(buttons)

    def value(self) -> str:
        """The URI typed, stripped."""
        return self.uri.text().strip()


class LibvirtPanel(QObject):
    """The libvirt side tree and what choosing a disk does to the window."""

    connected = Signal(str)
    """The domains of this URI are in the tree."""
    disk_opened = Signal(str, str, str)
    """A disk's chain (uri, domain, disk) is on screen."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.last_uri = DEFAULT_URI
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["libvirt", "state / source"])
        self.tree.setAccessibleName("libvirt domains")
        self.tree.itemActivated.connect(self._on_tree_item_activated)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._on_tree_context_menu_requested)
        self.disk_session = DiskSession(window)
        self.collapse_dialog: CollapseDialog | None = None
        self.snapshot_dialog: QDialog | None = None
        window.job_done.connect(self._on_window_job_done)
        self.dock = QDockWidget("libvirt", window)
        self.dock.setObjectName("libvirtDock")
        self.dock.setWidget(self.tree)
        self.tree.setMinimumWidth(300)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.dock.hide()
        self.action = QAction("Connect to &libvirt…", window)
        self.action.setToolTip("List the VMs of a libvirt host and show their disks' chains")
        self.action.triggered.connect(self.ask)
        window.add_connect_action(self.action)
        panel = window.plan_panel
        self._previous_filter = getattr(panel, "request_filter", None)
        panel.request_filter = self._adjust

    def alive(self) -> bool:
        """Whether the window still exists: a listing may come back after it was closed."""
        return shiboken6.isValid(self) and shiboken6.isValid(self.tree)

    # -- connecting -----------------------------------------------------------------------------

    def ask(self) -> None:
        """Connect to libvirt…: explain what to install, or ask for the URI and connect."""
        problem = binding_problem()
        if problem is not None:
            QMessageBox.information(self.window, "libvirt support is not installed", problem)
            return
        dialog = LibvirtConnectDialog(self.window, self.last_uri)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.value():
            self.add_connection(dialog.value())

    def add_connection(self, uri: str) -> None:
        """List ``uri``'s domains off the GUI thread and show them as one group of the tree."""
        from backchain.engines.libvirt.read import list_domains

        self.last_uri = uri
        self.window.status_label.setText(f"Connecting to {uri}…")
        run_in_background(
            lambda _report: list_domains(uri),  # runs in a pool thread
            on_result=lambda domains: self._on_listed(uri, domains),
            on_error=lambda error: self._on_failed(uri, error),
        )

    def _host_item(self, uri: str) -> QTreeWidgetItem:
        for index in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(index)
            if item is not None and item.data(0, _ROLE) == ("host", uri):
                item.takeChildren()
                return item
        item = QTreeWidgetItem([uri, ""])
        item.setData(0, _ROLE, ("host", uri))
        self.tree.addTopLevelItem(item)
        return item

    def _on_listed(self, uri: str, domains: Any, quiet: bool = False) -> None:
        if not self.alive():
            return
        host = self._host_item(uri)
        for dom in domains:
            state = "running" if dom.running else "shut off"
            dom_item = QTreeWidgetItem(host, [dom.name, state])
            dom_item.setData(0, _ROLE, ("domain", uri, dom.name))
            for disk in dom.disks:
                disk_item = QTreeWidgetItem(dom_item, [disk.target, disk.chain[0].path])
                disk_item.setData(0, _ROLE, ("disk", uri, dom.name, disk.target))
                disk_item.setToolTip(1, "\n".join(layer.path for layer in disk.chain))
        host.setExpanded(True)
        self.tree.resizeColumnToContents(0)
        self.dock.show()
        if not quiet:
            self.window.status_label.setText(f"{uri}: {len(domains)} domains")
        self.connected.emit(uri)

    def _on_failed(self, where: str, error: BaseException) -> None:
        if not self.alive():
            return
        summary = error.summary if isinstance(error, BackchainError) else str(error)
        details = error.details if isinstance(error, BackchainError) else ""
        self.window.show_load_error(where, summary, details)
        self.window.status_label.setText(summary)

    # -- opening a disk -------------------------------------------------------------------------

    def _on_tree_item_activated(self, item: QTreeWidgetItem, _column: int) -> None:
        data = item.data(0, _ROLE)
        if isinstance(data, tuple) and data[0] == "disk":
            self.open_disk(data[1], data[2], data[3])

    def open_disk(self, uri: str, domain: str, disk: str) -> None:
        """Read one disk's chain off the GUI thread and put it in the window."""
        from backchain.engines.libvirt.read import domain_graph

        self.window.status_label.setText(f"Reading {domain} {disk} from {uri}…")
        run_in_background(
            lambda _report: domain_graph(uri, domain, disk),  # runs in a pool thread
            on_result=lambda result: self._on_disk_read(uri, domain, disk, result),
            on_error=lambda error: self._on_failed(f"{domain} {disk}", error),
        )

    def _on_disk_read(self, uri: str, domain: str, disk: str, result: Any) -> None:
        if not self.alive():
            return
        from backchain.engines.libvirt.engine import LibvirtTarget
        from backchain.engines.libvirt.read import is_local

        graph, info, running = result
        window = self.window
        self.disk_session.show(LibvirtTarget(uri, domain, disk), graph, info, running)
        window.reloader = lambda: self.open_disk(uri, domain, disk)
        where = "this machine" if is_local(uri) else f"{uri} (chain from the domain XML only)"
        state = "running" if running else "shut off"
        window.status_label.setText(f"{domain} {info.target} ({state}) on {where}")
        window.setWindowTitle(f"{domain} {info.target} — Backchain")
        self.disk_opened.emit(uri, domain, disk)

    def _on_window_job_done(self, _ok: bool, _summary: str, _details: str) -> None:
        """A disk's job ended: list the host again so the tree shows the disks' new sources."""
        if self.disk_session.active and self.disk_session.target is not None:
            self.refresh(self.disk_session.target.uri)

    def refresh(self, uri: str) -> None:
        """List ``uri``'s domains again (after a commit, a re-point or a collapse)."""
        from backchain.engines.libvirt.read import list_domains

        run_in_background(
            lambda _report: list_domains(uri),  # runs in a pool thread
            on_result=lambda domains: self._on_listed(uri, domains, quiet=True),
            on_error=lambda error: self.window.status_label.setText(str(error)),
        )

    # -- collapse this VM's chains --------------------------------------------------------------

    def context_menu_for(self, item: QTreeWidgetItem) -> QMenu | None:
        """The tree's context menu for a domain (collapse) or a disk (show its chain)."""
        data = item.data(0, _ROLE)
        if not isinstance(data, tuple) or data[0] not in ("domain", "disk"):
            return None
        menu = QMenu(self.tree)
        if data[0] == "domain":
            collapse = menu.addAction("Collapse this VM's chains…")
            collapse.setToolTip("Commit every disk of this domain into its bottom image")
            collapse.triggered.connect(lambda _c=False, u=data[1], d=data[2]: self.collapse(u, d))
            snapshot = menu.addAction("Delete snapshot…")  # issue 14
            snapshot.setToolTip("Delete one of this domain's libvirt snapshots, as libvirt does")
            snapshot.triggered.connect(
                lambda _c=False, u=data[1], d=data[2]: self.delete_snapshot(u, d)
            )
        else:
            show = menu.addAction("Show this disk's chain")
            show.triggered.connect(
                lambda _c=False, u=data[1], d=data[2], k=data[3]: self.open_disk(u, d, k)
            )
        return menu

    def _on_tree_context_menu_requested(self, position: QPoint) -> None:
        item = self.tree.itemAt(position)
        menu = self.context_menu_for(item) if item is not None else None
        if menu is not None:
            menu.exec(self.tree.viewport().mapToGlobal(position))

    def collapse(self, uri: str, domain: str) -> CollapseDialog:
        """Open "Collapse this VM's chains" for ``domain``: its plans first, then its progress."""
        dialog = CollapseDialog(uri, domain, self.window)
        dialog.collapsed.connect(lambda _summary: self._on_collapsed(uri, domain, _summary))
        self.collapse_dialog = dialog
        dialog.show()
        return dialog

    def delete_snapshot(self, uri: str, domain: str) -> QDialog:
        """Open "Delete snapshot…" for ``domain``; when it ends, the host and disk are re-read."""
        from backchain.ui.libvirt_snapshot_delete import SnapshotDeleteDialog

        dialog = SnapshotDeleteDialog(uri, domain, self.window)
        dialog.deleted.connect(lambda text: self._on_collapsed(uri, domain, text))
        self.snapshot_dialog = dialog
        dialog.show()
        return dialog

    def _on_collapsed(self, uri: str, domain: str, text: str) -> None:
        self.window.status_label.setText(text.splitlines()[-1] if text else "")
        self.refresh(uri)
        target = self.disk_session.target
        if self.disk_session.active and target is not None and target.domain == domain:
            self.window.reload()

    def _adjust(self, request: CommitRequest) -> CommitRequest:
        """On a running domain, choosing its active layer as top turns ACTIVE on."""
        if self._previous_filter is not None:
            request = self._previous_filter(request)
        if self.window.plan_panel.engine != "libvirt":
            return request
        top = request.top or request.image
        return replace(request, engine="libvirt", active=top == request.image)


def install(window: MainWindow) -> LibvirtPanel:
    """Add Connect → Connect to libvirt… and the side tree to the window."""
    panel = LibvirtPanel(window)
    window.libvirt_panel = panel  # type: ignore[attr-defined]
    return panel
