"""Connect to libvirt…: a side tree of host → domain → disk; open a disk, collapse a domain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
from backchain.engines.libvirt.engine import LibvirtTarget
from backchain.engines.libvirt.read import list_domains, require_libvirt
from backchain.ui.background import run_in_background
from backchain.ui.job_worker import JobController
from backchain.ui.libvirt_collapse import CollapseDialog
from backchain.ui.libvirt_disk import DiskSession
from backchain.ui.libvirt_snapshot_delete import SnapshotDeleteDialog
from backchain.ui.plan_panel import PlanPanel
from backchain.ui.progress_panel import ProgressPanel
from backchain.ui.sources import ConnectHost

DEFAULT_URI = "qemu:///system"
_ROLE = Qt.ItemDataRole.UserRole


def binding_problem() -> str | None:
    """What to install when libvirt cannot be imported, or None when it can.

    Importing, not just finding, the module: the AppImage carries the binding, but it loads the
    host's libvirt.so.0, which may be missing or too old.
    """
    try:
        require_libvirt()
    except BackchainError as err:
        return str(err)
    return None


LIST_ATTEMPTS = 3


def _list_settled(uri: str) -> Any:  # runs in a pool thread
    """list_domains, tried again when a domain vanished between listing and reading it.

    On a busy host (transient domains come and go) libvirt lists a domain and then cannot
    find it: that says nothing about the host, so the listing is simply taken again.
    """
    for attempt in range(LIST_ATTEMPTS):
        try:
            return list_domains(uri)
        except BackchainError as err:
            if "Domain not found" not in str(err) or attempt == LIST_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


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

    def __init__(
        self,
        parent: QWidget,
        host: ConnectHost,
        plan_panel: PlanPanel,
        jobs: JobController,
        progress: ProgressPanel,
        replan: Callable[[], None],
    ) -> None:
        super().__init__(parent)
        self._parent, self._host = parent, host
        self.last_uri = DEFAULT_URI
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["libvirt", "state / source"])
        self.tree.setAccessibleName("libvirt domains")
        self.tree.itemActivated.connect(self._on_tree_item_activated)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._on_tree_context_menu_requested)
        self.disk_session = DiskSession(
            self, plan_panel, jobs, progress, host.current_source, replan
        )
        self.collapse_dialog: CollapseDialog | None = None
        self.snapshot_dialog: QDialog | None = None
        jobs.job_finished.connect(self._on_jobs_job_finished)
        self.dock = QDockWidget("libvirt")
        self.dock.setObjectName("libvirtDock")
        self.dock.setWidget(self.tree)
        self.tree.setMinimumWidth(260)
        self.dock.hide()
        self.action = QAction("Connect to &libvirt…", self)
        self.action.setToolTip("List the VMs of a libvirt host and show their disks' chains")
        self.action.triggered.connect(self.ask)
        host.add_connect_action(self.action)

    def alive(self) -> bool:
        """Whether the window still exists: a listing may come back after it was closed."""
        return shiboken6.isValid(self) and shiboken6.isValid(self.tree)

    # -- connecting -----------------------------------------------------------------------------

    def ask(self) -> None:
        """Connect to libvirt…: explain what to install, or ask for the URI and connect."""
        problem = binding_problem()
        if problem is not None:
            QMessageBox.information(self._parent, "libvirt support is not installed", problem)
            return
        dialog = LibvirtConnectDialog(self._parent, self.last_uri)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.value():
            self.add_connection(dialog.value())

    def add_connection(self, uri: str) -> None:
        """List ``uri``'s domains off the GUI thread and show them as one group of the tree."""
        self.last_uri = uri
        self._host.events.status(f"Connecting to {uri}…")
        run_in_background(
            lambda _report: _list_settled(uri),  # runs in a pool thread
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
            self._host.events.status(f"{uri}: {len(domains)} domains")
        self.connected.emit(uri)

    def _on_failed(self, where: str, error: BaseException) -> None:
        if not self.alive():
            return
        summary = error.summary if isinstance(error, BackchainError) else str(error)
        details = error.details if isinstance(error, BackchainError) else ""
        self._host.notify_error(summary if where in summary else f"{where}: {summary}", details)

    # -- opening a disk -------------------------------------------------------------------------

    def _on_tree_item_activated(self, item: QTreeWidgetItem, _column: int) -> None:
        data = item.data(0, _ROLE)
        if isinstance(data, tuple) and data[0] == "disk":
            self.open_disk(data[1], data[2], data[3])

    def open_disk(self, uri: str, domain: str, disk: str) -> None:
        """Make this disk the window's source; its chain is read off the GUI thread."""
        target = LibvirtTarget(uri, domain, disk)
        source = self.disk_session.make_source(target, self._host.events)
        self._host.open_source(source)
        self.disk_opened.emit(uri, domain, disk)

    def _on_jobs_job_finished(self, _ok: bool, _summary: str, _details: str) -> None:
        """A disk's job ended: list the host again so the tree shows the disks' new sources."""
        target = self.disk_session.target
        if target is not None:
            self.refresh(target.uri)

    def refresh(self, uri: str) -> None:
        """List ``uri``'s domains again (after a commit, a re-point or a collapse)."""
        run_in_background(
            lambda _report: _list_settled(uri),  # runs in a pool thread
            on_result=lambda domains: self._on_listed(uri, domains, quiet=True),
            on_error=lambda error: self._host.events.status(str(error)),
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
            snapshot = menu.addAction("Delete snapshot…")
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
        dialog = CollapseDialog(uri, domain, self._parent)
        dialog.collapsed.connect(lambda _summary: self._on_collapsed(uri, domain, _summary))
        self.collapse_dialog = dialog
        dialog.show()
        return dialog

    def delete_snapshot(self, uri: str, domain: str, chosen: str | None = None) -> QDialog:
        """Open "Delete snapshot…" for ``domain``; when it ends, the host and disk are re-read."""
        dialog = SnapshotDeleteDialog(uri, domain, self._parent, chosen)
        dialog.deleted.connect(lambda text: self._on_collapsed(uri, domain, text))
        self.snapshot_dialog = dialog
        dialog.show()
        return dialog

    def delete_layer_snapshot(self, name: str) -> QDialog | None:
        """A layer card's "Delete snapshot NAME…": the same dialog, on the open disk's domain."""
        target = self.disk_session.target
        if target is None:
            return None
        return self.delete_snapshot(target.uri, target.domain, name)

    def _on_collapsed(self, uri: str, domain: str, text: str) -> None:
        self._host.events.status(text.splitlines()[-1] if text else "")
        self.refresh(uri)
        target = self.disk_session.target
        if target is not None and target.domain == domain:
            self._host.reload()
