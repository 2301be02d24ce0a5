"""The libvirt side tree against a real libvirtd: host → domain → disk, and a disk's plan."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from backchain.engines.libvirt.engine import LibvirtTarget
from backchain.ui import libvirt_panel
from backchain.ui.main_window import MainWindow
from tests.images import ChainBuilder
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

URI = "qemu:///system"


def _find(panel: libvirt_panel.LibvirtPanel, kind: str, name: str) -> object | None:
    tree = panel.tree
    for i in range(tree.topLevelItemCount()):
        host = tree.topLevelItem(i)
        if kind == "host" and host.text(0) == name:
            return host
        for j in range(host.childCount()):
            dom = host.child(j)
            if kind == "domain" and dom.text(0) == name:
                return dom
    return None


def test_connect_lists_domains_and_opening_a_disk_plans_a_libvirt_commit(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path / "vm").chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    panel = window.libvirt_panel
    assert panel.action.text() == "Connect to &libvirt…"
    panel.add_connection(URI)
    qtbot.waitUntil(lambda: _find(panel, "domain", name) is not None or bool(window.banner.text()),
                    timeout=30_000)  # fmt: skip
    assert not window.banner.text()
    dom = _find(panel, "domain", name)
    assert dom is not None and dom.text(1) == "running"
    disk = dom.child(0)
    assert disk.text(0) == "vda" and disk.text(1) == str(paths[-1])
    with qtbot.waitSignal(window.graph_shown, timeout=30_000):
        panel.tree.itemActivated.emit(disk, 0)
    assert window.connection == LibvirtTarget(URI, name, "vda")
    assert window.plan_panel.engine == "libvirt"
    request = window.plan_panel.request()
    assert request is not None and request.active and request.engine == "libvirt"
    qtbot.waitUntil(lambda: window.plan is not None, timeout=10_000)
    assert window.plan is not None
    call = window.plan.steps[0].call
    assert call is not None and call["call"] == "virDomainBlockCommit" and call["top"] == "vda[1]"
    assert "VIR_DOMAIN_BLOCK_COMMIT_ACTIVE" in call["flags"]


def test_connect_dialog_defaults_to_the_system_uri(qtbot: QtBot) -> None:
    dialog = libvirt_panel.LibvirtConnectDialog()
    qtbot.addWidget(dialog)
    assert dialog.value() == "qemu:///system"
