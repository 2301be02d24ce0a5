"""Delete snapshot… from a domain's context menu: preview, confirmation, progress, re-read."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from backchain.engines.libvirt.snapshot_delete import SnapshotDeletePlan
from backchain.ui.libvirt_snapshot_delete import SnapshotDeleteDialog
from backchain.ui.main_window import MainWindow
from tests.gui.libvirt_helpers import connect, panel_of, settle
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401
from tests.libvirt_snapshot_vm import made_vm, snap_vm, with_snapshots  # noqa: F401


def test_delete_snapshot_from_the_domains_menu_previews_confirms_runs_and_rereads(
    qtbot: QtBot, window: MainWindow, made_vm: tuple[Path, Domains],  # noqa: F811
) -> None:  # fmt: skip
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 2)
        panel = panel_of(window)
        menu = panel.context_menu_for(connect(qtbot, window, vm.name))
        assert menu is not None
        next(x for x in menu.actions() if x.text() == "Delete snapshot…").trigger()
        dialog = panel.snapshot_dialog
        assert isinstance(dialog, SnapshotDeleteDialog)
        qtbot.waitUntil(lambda: dialog.choice.count() == 2, timeout=60_000)
        assert [dialog.choice.itemData(i) for i in range(2)] == ["s1", "s2"]
        assert dialog.choice.itemText(0).startswith("s1 · ")
        dialog.choice.setCurrentIndex(0)
        qtbot.waitUntil(lambda: dialog.plan is not None and dialog.plan.snapshot == "s1",
                        timeout=60_000)  # fmt: skip
        preview = dialog.text.toPlainText()
        assert preview.startswith(f"Deleting snapshot s1 of domain '{vm.name}':")
        assert "is merged into" in preview and "then deleted" in preview
        asked: list[str] = []

        def say_no(plan: SnapshotDeletePlan) -> bool:
            asked.append(plan.snapshot)
            return False

        dialog.confirm = say_no
        dialog.delete_button.click()
        assert asked == ["s1"] and not dialog.running  # said no: nothing ran
        assert vm.listed() == ["s1", "s2"]
        dialog.confirm = lambda plan: True
        with qtbot.waitSignal(dialog.deleted, timeout=180_000) as done:
            dialog.delete_button.click()
        assert done.args[0].startswith("Deleted snapshot s1"), done.args[0]
        assert dialog.bar.format() == "done"
        qtbot.waitUntil(lambda: dialog.choice.count() == 1, timeout=60_000)  # re-read
        settle(qtbot)
        vm.check_consistent(["s2"])
        dialog.close()
