"""Collapse a VM's chains from the side tree, the remote note in the preview, a missing binding."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from backchain.engines.libvirt.read import INSTALL_HINT, REMOTE_NOTE
from backchain.ui.libvirt_collapse import CollapseDialog
from backchain.ui.main_window import MainWindow
from tests.gui.libvirt_helpers import URI, connect, open_disk, panel_of, settle, source_of
from tests.helpers.checks import chain_reads
from tests.images import ChainBuilder
from tests.libvirt_daemon import Domains, domains, libvirtd, ssh_uri  # noqa: F401

NAMES = ["base.qcow2", "snap1.qcow2", "active.qcow2"]


def test_collapse_from_the_domains_context_menu_commits_both_disks(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    a = ChainBuilder(tmp_path / "a").chain(NAMES)
    b = ChainBuilder(tmp_path / "b").chain(NAMES[:2])
    name = domains.start({"vda": str(a[-1]), "vdb": str(b[-1])})
    panel = panel_of(window)
    item = connect(qtbot, window, name)
    menu = panel.context_menu_for(item)
    assert menu is not None
    action = next(x for x in menu.actions() if x.text() == "Collapse this VM's chains…")
    action.trigger()
    dialog = panel.collapse_dialog
    assert isinstance(dialog, CollapseDialog)
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=60_000)
    assert list(dialog.rows) == ["vda", "vdb"]
    assert "active.qcow2 → base.qcow2" in dialog.rows["vda"].what.text()
    assert "then pivot" in dialog.rows["vdb"].what.text()
    shown = {disk: plan for disk, plan in dialog.plans}
    with qtbot.waitSignal(dialog.collapsed, timeout=180_000) as done:
        dialog.start_button.click()
    summary = done.args[0]
    settle(qtbot)
    assert "ok  vda" in summary and "ok  vdb" in summary
    assert summary.splitlines()[-1] == f"{name}: 2 of 2 disks collapsed"
    assert dialog.summary_box.toPlainText() == summary
    for disk, row in dialog.rows.items():
        assert row.plan is shown[disk]  # the plans shown are the plans that ran
        assert row.events, disk  # each disk had its own progress
        assert row.bar.format() == "done"
    assert source_of(name, "vda") == str(a[0]) and source_of(name, "vdb") == str(b[0])
    assert chain_reads(a[0], 3) and chain_reads(b[0], 2)
    dialog.close_button.click()
    assert not dialog.isVisible()


def test_remote_host_note_is_in_the_preview(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, domains: Domains, ssh_uri: str,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path / "vm").chain(NAMES)
    name = domains.start({"vda": str(paths[-1])})
    open_disk(qtbot, window, name, uri=ssh_uri)
    window.plan_panel.choose_top(str(paths[1]))
    assert window.plan is not None and window.plan.engine == "libvirt"
    assert f"Note: {REMOTE_NOTE}" in [text for _role, text in window.preview.lines()]
    assert "domain XML only" in window.status_label.text()


def test_without_libvirt_python_the_menu_explains_what_to_install(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The binding cannot be uninstalled for one test; a None entry makes `import libvirt` fail.
    monkeypatch.setitem(sys.modules, "libvirt", None)
    panel = panel_of(window)
    assert panel.action in window.connect_menu.actions()
    seen: list[tuple[str, str]] = []

    def answer() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QMessageBox) and widget.isVisible():
                seen.append((widget.windowTitle(), widget.text()))
                widget.accept()
                return
        QTimer.singleShot(50, answer)

    QTimer.singleShot(50, answer)
    panel.action.trigger()
    assert seen == [("libvirt support is not installed", INSTALL_HINT)]
    assert panel.tree.topLevelItemCount() == 0 and URI not in window.status_label.text()
