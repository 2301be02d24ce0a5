"""The snapshot guard in the window: which libvirt snapshots a commit or pull breaks, and the
explicit choice to drop their metadata (VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) afterwards."""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QFrame, QLabel, QVBoxLayout, QWidget

from backchain.engines.libvirt.snapshot_xml import METADATA_ONLY, SnapshotGuardError

DELETE_HINT = "Delete snapshot… (right-click the layer, or the domain in the libvirt list)"


def window_words(error: SnapshotGuardError) -> str:
    """The guard's refusal as the window says it: the snapshots, and the way out in this window."""
    names = ", ".join(error.names)
    plural = len(error.names) > 1
    return (
        f"{error.what[0].upper()}{error.what[1:]}, which libvirt snapshot{'s' if plural else ''} "
        f"{names} name{'' if plural else 's'}: libvirt could no longer delete "
        f"{'them' if plural else 'it'}. Delete {'them' if plural else 'it'} first, newest first, "
        f"with {DELETE_HINT}, or tick “Go ahead and drop their metadata” below."
    )


class GuardBox(QFrame):
    """Shown while the selected job touches files that libvirt snapshots name."""

    drop_toggled = Signal(bool)
    """The user changed the drop-metadata choice (the window plans again)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("snapshotGuard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.names: tuple[str, ...] = ()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setAccessibleName("libvirt snapshots this job breaks")
        self.drop = QCheckBox("Go ahead and drop their metadata afterwards")
        self.drop.setAccessibleName("Drop snapshot metadata")
        self.drop.setToolTip(
            f"After the job succeeds, remove these snapshots from libvirt ({METADATA_ONLY}). "
            "Their files stay; the data they held is no longer a snapshot libvirt knows."
        )
        self.drop.toggled.connect(self.drop_toggled.emit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(self.text)
        layout.addWidget(self.drop)
        self.hide()

    def show_names(self, names: Sequence[str]) -> None:
        """The snapshots the selected job breaks (none: the box goes, and the choice resets)."""
        self.names = tuple(names)
        if not self.names:
            self.drop.blockSignals(True)
            self.drop.setChecked(False)
            self.drop.blockSignals(False)
            self.hide()
            return
        listed = ", ".join(f"<b>{html.escape(n)}</b>" for n in self.names)
        if self.drop.isChecked():
            words = (f"After the job, the metadata of libvirt snapshot"
                     f"{'s' if len(self.names) > 1 else ''} {listed} is removed.")  # fmt: skip
        else:
            # The planner's message above says why and how to delete them; this names them.
            words = (
                f"libvirt snapshot{'s' if len(self.names) > 1 else ''} this job breaks: {listed}"
            )
        self.text.setText(words)
        self.show()
