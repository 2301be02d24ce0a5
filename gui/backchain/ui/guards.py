"""Questions asked before work is abandoned, each saying what state the files will be left in."""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from backchain.core.model import CommitPlan, StepKind

_ONLINE = {StepKind.BLOCK_COMMIT, StepKind.LIBVIRT_COMMIT}


def state_if_cancelled(plan: CommitPlan, phase: str) -> str:
    """Where the files stand if the job of ``plan`` is stopped now, in ``phase``."""
    name = os.path.basename
    base, top = name(plan.base), name(plan.top)
    if plan.steps and plan.steps[0].kind in _ONLINE:
        return (
            f"QEMU aborts the block job: the VM keeps running on {top}, whose chain stays as "
            f"it was. {base} may hold part of the copy, which nothing reads."
        )
    if phase in ("", "commit"):
        text = f"{base} is left partly written. {top} and every layer above it still read correctly"
        risky = [name(a.image) for a in plan.at_risk]
        if risky:
            text += f", but {', '.join(risky)} may already read changed data from {base}"
        return text + ". Running the same commit again completes it."
    if phase == "rebase":
        overlays = ", ".join(name(r.image) for r in plan.rebased) or "the overlays"
        return (
            f"{base} holds the merged data. Some of {overlays} may still point at {top}, "
            "and still read correctly through it. Re-run to finish re-pointing them."
        )
    if phase in ("verify", "delete"):
        return (
            f"{base} holds the merged data and the overlays point at it. Some of the merged "
            "layers may not be deleted yet; they are no longer used."
        )
    return f"The job stops during {phase}; the log says which steps completed."


def ask(
    parent: QWidget,
    title: str,
    question: str,
    state: str,
    yes: str,
    no: str,
    on_yes: Callable[[], None],
) -> QMessageBox:
    """A window-modal question that does not block; ``on_yes`` runs only when ``yes`` is clicked.

    The safe answer (``no``) is the default and the Escape button, so a second Esc never
    abandons work by accident.
    """
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(question)
    box.setInformativeText(state)
    accept = box.addButton(yes, QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton(no, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.setEscapeButton(keep)

    def answered(_result: int) -> None:
        if box.clickedButton() is accept:
            on_yes()

    box.finished.connect(answered)
    box.open()
    return box
