"""Snapshots on the cards, the snapshot guard in the window, and Delete snapshot… on a layer."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot

from backchain.core.model import StepKind
from backchain.engines.libvirt.snapshot_xml import METADATA_ONLY
from backchain.ui.libvirt_snapshot_delete import SnapshotDeleteDialog
from backchain.ui.main_window import MainWindow
from backchain.ui.node_item import NODE_HEIGHT, SNAPSHOT_LINE
from tests.gui.libvirt_helpers import connect, panel_of, settle
from tests.images import create, tree_checksums
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401
from tests.libvirt_snapshot_vm import made_vm, snap_vm, with_snapshots  # noqa: F401


def _open(qtbot: QtBot, window: MainWindow, name: str) -> None:
    """Open disk hda; its default commit may be refused by the guard, so no plan is required."""
    item = connect(qtbot, window, name)
    child = next(item.child(i) for i in range(item.childCount()) if item.child(i).text(0) == "hda")
    with qtbot.waitSignal(window.graph_shown, timeout=60_000):
        panel_of(window).tree.itemActivated.emit(child, 0)


def _choose(qtbot: QtBot, window: MainWindow, top: str, base: str) -> None:
    window.plan_panel.choose_top(top)
    window.plan_panel.choose_base(base)
    qtbot.waitUntil(lambda: window.plan_panel.base() == base, timeout=10_000)


def test_the_guard_names_the_snapshots_and_the_drop_choice_makes_the_plan_that_runs(
    qtbot: QtBot, window: MainWindow, made_vm: tuple[Path, Domains],  # noqa: F811
) -> None:  # fmt: skip
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 3)
        chain = vm.chain("hda")  # vm.s3 (active), vm.s2, vm.s1, base
        _open(qtbot, window, vm.name)
        card = window.view.nodes[chain[1]]  # vm.s2: s2 made it, it holds s3's point in time
        assert [line.split(" · ")[0] for line in card.lines] == ["s2", "s3"]
        assert card.lines[0].endswith("(created)") and card.lines[1].endswith("(point-in-time)")
        assert card.height == NODE_HEIGHT + 2 * SNAPSHOT_LINE
        assert "libvirt snapshot" in card.toolTip()

        guard = panel_of(window).disk_session.guard
        before = tree_checksums(vm.directory)
        _choose(qtbot, window, chain[1], chain[2])
        assert window.plan is None and window.plan_error is not None
        assert "libvirt snapshots s3, s2, s1" in window.plan_error
        assert "Delete snapshot…" in window.plan_error
        assert not window.commit_action.isEnabled()
        assert guard.isVisible() and guard.names == ("s3", "s2", "s1")
        assert "this job breaks: <b>s3</b>, <b>s2</b>, <b>s1</b>" in guard.text.text()

        guard.drop.setChecked(True)  # the window plans again with the choice
        plan = window.plan
        assert plan is not None and window.commit_action.isEnabled()
        assert plan.steps[-1].kind is StepKind.LIBVIRT_SNAPSHOT_DELETE
        assert plan.steps[-1].call is not None and plan.steps[-1].call["flags"] == [METADATA_ONLY]
        assert plan.notes[0].startswith("Metadata dropped: libvirt snapshots s3, s2, s1")
        assert "is removed" in guard.text.text()
        assert tree_checksums(vm.directory) == before  # planning wrote nothing

        with qtbot.waitSignal(window.job_done, timeout=180_000) as done:
            assert window.start_job(plan).plan is plan  # the plan shown is the plan that runs
        assert done.args[0] is True, done.args
        settle(qtbot)
        assert vm.listed() == []
        vm.check_consistent([], one_layer_each=False)


def test_a_layer_card_offers_delete_snapshot_for_each_of_its_snapshots(
    qtbot: QtBot, window: MainWindow, made_vm: tuple[Path, Domains],  # noqa: F811
) -> None:  # fmt: skip
    with snap_vm(*made_vm, 1, True) as vm:
        with_snapshots(vm, 2)
        chain = vm.chain("hda")  # vm.s2 (active), vm.s1, base
        _open(qtbot, window, vm.name)
        menu = window.view.context_menu_for(chain[1])
        offered = [a.text() for a in menu.actions() if a.text().startswith("Delete snapshot")]
        assert [t.split(" · ")[0] for t in offered] == ["Delete snapshot s1", "Delete snapshot s2"]
        next(a for a in menu.actions() if a.text().startswith("Delete snapshot s2")).trigger()
        dialog = panel_of(window).snapshot_dialog
        assert isinstance(dialog, SnapshotDeleteDialog)
        qtbot.waitUntil(lambda: dialog.plan is not None, timeout=60_000)
        assert dialog.choice.currentData() == "s2" and dialog.plan is not None
        assert dialog.plan.snapshot == "s2"
        dialog.confirm = lambda plan: True
        with qtbot.waitSignal(dialog.deleted, timeout=180_000) as done:
            dialog.delete_button.click()
        assert done.args[0].startswith("Deleted snapshot s2"), done.args[0]
        # The window reads the disk again: s2's overlay is gone, s1 is all that is left.
        qtbot.waitUntil(lambda: chain[0] not in window.view.nodes, timeout=60_000)
        settle(qtbot)
        card = window.view.nodes[chain[1]]
        assert [line.split(" · ")[0] for line in card.lines] == ["s1"]
        vm.check_consistent(["s1"])
        dialog.close()


def test_internal_snapshots_show_on_the_card_of_a_plain_image(
    tmp_path: Path, window: MainWindow, open_and_wait: Callable[[str], str]
) -> None:
    image = create(tmp_path / "disk.qcow2")
    names = ["before-upgrade", "after-upgrade", "clean-install-with-a-long-name"]
    for name in names:
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(image)], check=True)
    assert open_and_wait(str(image)) == "extents"
    card = window.view.nodes[str(image.resolve())]
    assert card.lines == [f"3 internal snapshots: {', '.join(names)}"]
    assert card.height == NODE_HEIGHT + SNAPSHOT_LINE
    assert "clean-install-with-a-long-name" in card.toolTip()
