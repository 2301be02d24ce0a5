"""Shared steps of the libvirt GUI tests: connect the side tree, open a disk, answer dialogs."""

from __future__ import annotations

import subprocess

from PySide6.QtWidgets import QApplication, QMessageBox, QTreeWidgetItem
from pytestqt.qtbot import QtBot

from backchain.engines.libvirt.read import parse_disks
from backchain.ui.libvirt_panel import LibvirtPanel
from backchain.ui.main_window import MainWindow

URI = "qemu:///system"


def panel_of(window: MainWindow) -> LibvirtPanel:
    """The panel the window installed."""
    return window.libvirt_panel


def domain_item(panel: LibvirtPanel, name: str, uri: str = URI) -> QTreeWidgetItem | None:
    """The tree item of ``name`` under host ``uri``."""
    tree = panel.tree
    for i in range(tree.topLevelItemCount()):
        host = tree.topLevelItem(i)
        if host is None or host.text(0) != uri:
            continue
        for j in range(host.childCount()):
            if host.child(j).text(0) == name:
                return host.child(j)
    return None


def connect(qtbot: QtBot, window: MainWindow, name: str, uri: str = URI) -> QTreeWidgetItem:
    """Connect the side tree to ``uri`` and return ``name``'s item."""
    panel = panel_of(window)
    panel.add_connection(uri)
    qtbot.waitUntil(
        lambda: domain_item(panel, name, uri) is not None or window.banner.isVisible(),
        timeout=60_000,
    )
    assert not window.banner.isVisible(), window.banner.text()
    item = domain_item(panel, name, uri)
    assert item is not None
    return item


def open_disk(
    qtbot: QtBot, window: MainWindow, name: str, disk: str = "vda", uri: str = URI
) -> None:
    """Activate the disk's item in the tree (as a double-click does) and wait for its plan."""
    item = connect(qtbot, window, name, uri)
    child = next(item.child(i) for i in range(item.childCount()) if item.child(i).text(0) == disk)
    with qtbot.waitSignal(window.graph_shown, timeout=60_000):
        panel_of(window).tree.itemActivated.emit(child, 0)
    assert window.plan is not None, window.plan_error


def click_in_box(qtbot: QtBot, title: str, button_text: str) -> str:
    """Wait for a message box titled ``title`` and click ``button_text``; return its text."""
    found: list[QMessageBox] = []

    def box_is_open() -> bool:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                if widget.windowTitle() == title:
                    found.append(widget)
                    return True
        return False

    qtbot.waitUntil(box_is_open, timeout=60_000)
    box = found[0]
    text = box.text()
    button = next(b for b in box.buttons() if b.text() == button_text)
    button.click()
    return text


def settle(qtbot: QtBot) -> None:
    """Wait until the window's background reads (re-listing, re-reading a disk) have returned.

    A job's end starts them; left running, they would land in the next test's event loop.
    """
    from backchain.ui import background

    qtbot.waitUntil(lambda: not background._alive, timeout=60_000)


def source_of(name: str, disk: str = "vda", inactive: bool = False) -> str:
    """The disk's source file in ``virsh dumpxml`` (``--inactive``: the persistent definition)."""
    argv = ["virsh", "-c", URI, "dumpxml", name] + (["--inactive"] if inactive else [])
    xml = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return next(d for d in parse_disks(xml) if d.target == disk).chain[0].path
