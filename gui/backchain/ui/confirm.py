"""The confirmation before a commit: every destructive effect; Cancel first when bytes at risk."""

from __future__ import annotations

import html
import os.path

from PySide6.QtWidgets import QMessageBox, QWidget

from backchain.core.describe import amount, lost_lines, view_change_lines
from backchain.core.model import CommitPlan, Operation
from backchain.ui.text import human_bytes


def _names(paths: list[str]) -> str:
    return ", ".join(html.escape(os.path.basename(p)) for p in paths)


def bytes_at_risk(plan: CommitPlan) -> bool:
    """Whether any image may read changed data (unknown or a lower bound counts as at risk),
    a view of top's overlays changes, or DELETE destroys snapshots or bitmaps."""
    risky = any(item.bytes is None or item.bytes > 0 or not item.exact for item in plan.at_risk)
    return risky or bool(plan.view_changes) or bool(plan.lost)


def effects_html(plan: CommitPlan) -> str:
    """The destructive effects as a list, named file by file."""
    if plan.operation is Operation.PULL:
        return pull_effects_html(plan)
    items = [
        f"<b>{html.escape(os.path.basename(plan.base))}</b> is written: "
        f"{amount(plan.bytes_to_copy, plan.bytes_to_copy_exact)} from "
        f"{_names(list(plan.merged))}."
    ]
    if plan.base_grows_to is not None:
        items.append(f"<b>Base grows</b> to {human_bytes(plan.base_grows_to)}.")
    if plan.deleted:
        items.append(f"<b>Deleted:</b> {_names(list(plan.deleted))}.")
    # One role per image: a layer that is deleted is not also listed as invalid or stale.
    invalid = [a.image for a in plan.invalid if a.image not in plan.deleted]
    stale = [p for p in plan.stale if p not in plan.deleted]
    if invalid:
        items.append(f"<b>Invalid at once:</b> {_names(invalid)}.")
    if stale:
        items.append(f"<b>Stale after the next write to base:</b> {_names(stale)}.")
    for item in plan.at_risk:
        size = "an unknown amount" if item.bytes is None else amount(item.bytes, item.exact)
        items.append(
            f"<b>At risk:</b> {html.escape(os.path.basename(item.image))} "
            f"({size} would read changed data)."
        )
    items += [f"<b>View changes:</b> {html.escape(line)}" for line in view_change_lines(plan)]
    items += [f"<b>Lost:</b> {html.escape(line)}" for line in lost_lines(plan)]
    if plan.rebased:
        items.append(f"Re-pointed to base: {_names([r.image for r in plan.rebased])}.")
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def pull_effects_html(plan: CommitPlan) -> str:
    """A pull writes only top; it may delete the removed layers nothing else uses."""
    below = f"stays on {_names([plan.base])}" if plan.base else "becomes standalone"
    items = [
        f"<b>{html.escape(os.path.basename(plan.top))}</b> is written: "
        f"{human_bytes(plan.bytes_to_copy)} from {_names(list(plan.merged))}, and {below}."
    ]
    if plan.deleted:
        items.append(f"<b>Deleted:</b> {_names(list(plan.deleted))}.")
    items.append("No other image changes.")
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def build_confirmation(plan: CommitPlan, parent: QWidget | None = None) -> QMessageBox:
    """The dialog, not yet shown; its default button is Cancel whenever bytes are at risk."""
    box = QMessageBox(parent)
    box.setWindowTitle("Confirm commit")
    risky = bytes_at_risk(plan)
    box.setIcon(QMessageBox.Icon.Warning if risky or plan.deleted else QMessageBox.Icon.Question)
    box.setText(
        f"Commit {html.escape(os.path.basename(plan.top))} into "
        f"{html.escape(os.path.basename(plan.base))}?"
        if plan.operation is Operation.COMMIT
        else f"Pull into {html.escape(os.path.basename(plan.top))}?"
    )
    box.setInformativeText(effects_html(plan))
    box.setDetailedText(plan.shell_script())
    verb = "Pull" if plan.operation is Operation.PULL else "Commit"
    commit = box.addButton(verb, QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel if risky else commit)
    box.setEscapeButton(cancel)
    commit.setObjectName("confirmCommit")
    return box


def confirm_commit(plan: CommitPlan, parent: QWidget | None = None) -> bool:
    """Ask; True only when the user pressed Commit."""
    box = build_confirmation(plan, parent)
    box.exec()
    return box.clickedButton() is not None and box.clickedButton().objectName() == "confirmCommit"
