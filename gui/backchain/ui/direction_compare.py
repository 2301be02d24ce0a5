"""The preview's two columns, Commit | Pull: each direction's real plan side by side."""

from __future__ import annotations

import html
import os.path
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent, QResizeEvent
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QWidget

from backchain.core.describe import amount
from backchain.core.model import Operation
from backchain.ui.direction_figures import Figures, Side, Sides, figures, names
from backchain.ui.wording import humane_plan_error

_TITLES = {Operation.COMMIT: "Commit", Operation.PULL: "Pull"}
_ROWS = {
    "copy": "Copies:",
    "risk": "At risk:",
    "valid": "Stays valid:",
    "invalid": "Invalid:",
    "deletable": "Deletable:",
}


def _copy_text(found: Figures) -> str:
    if found.bytes_to_copy is None:
        return "unknown until allocation is read"
    return amount(found.bytes_to_copy, found.exact)


def _risk_text(found: Figures) -> tuple[str, str]:
    """(the row, the names with their bytes for the tooltip)."""
    if not found.at_risk:
        return "none", "No other image reads changed data."
    count = len(found.at_risk)
    size = "unknown bytes" if found.risk_bytes is None else amount(found.risk_bytes,
                                                                   found.risk_exact)  # fmt: skip
    tip = "\n".join(
        f"{os.path.basename(a.image)}: {amount(a.bytes, a.exact) if a.bytes is not None else '?'}"
        for a in found.at_risk
    )
    return f"{count} image{'s' if count != 1 else ''}, {size}", tip


def _valid_text(side: Side, found: Figures) -> str:
    plan = side.plan
    assert plan is not None
    if plan.operation is Operation.PULL:
        unchanged = f"; {names(plan.merged)} unchanged" if plan.merged else ""
        return f"every image ({os.path.basename(plan.top)} reads the same{unchanged})"
    parts = [names(found.valid)] if found.valid else []
    if found.stale:
        parts.append(f"{names(found.stale)} until base is written again")
    return "; ".join(parts) or "none"


def _deletable_text(side: Side, found: Figures) -> tuple[str, str]:
    if found.deleted:
        text = f"{names(found.deleted)} (after the verify)"
    elif found.deletable:
        text = f"{names(found.deletable)} (with DELETE)"
    else:
        text = "none"
    kept = [n for n in (side.plan.notes if side.plan else ()) if " is kept: " in n]
    tip = "\n".join(kept)
    if side.delete_refusal:
        tip = f"DELETE is refused: {side.delete_refusal}"
    return text, tip


class ElidedLabel(QLabel):
    """One line of plain text, cut with "…" to the width it gets; the whole text on hover."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.full = ""
        self.details = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def set_full(self, text: str, details: str = "") -> None:
        """The row's whole text, and what the tooltip adds below it."""
        self.full, self.details = text, details
        self.setToolTip("\n".join(t for t in (text, details) if t))
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Cut the text again for the new width."""
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.width(), 20)
        self.setText(self.fontMetrics().elidedText(self.full, Qt.TextElideMode.ElideRight, width))


class DirectionColumn(QFrame):
    """One direction's figures; the other direction's column is a button that switches."""

    chosen = Signal(str)
    """Clicked (or Space/Enter): the operation's value."""

    def __init__(self, operation: Operation, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.operation = operation
        self.side: Side | None = None
        self.figures: Figures | None = None
        self.selected = False
        self.setObjectName("directionColumn")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(f"{_TITLES[operation]} column")
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Maximum)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.rows: dict[str, ElidedLabel] = {}
        self.keys: dict[str, QLabel] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(1)
        grid.addWidget(self.title, 0, 0, 1, 2)
        for row, (key, words) in enumerate(_ROWS.items(), start=1):
            self.keys[key] = QLabel(words)
            self.keys[key].setContentsMargins(0, 0, 4, 0)
            self.rows[key] = ElidedLabel()
            grid.addWidget(self.keys[key], row, 0)
            grid.addWidget(self.rows[key], row, 1)
        for key in ("copy", "risk"):
            font = self.rows[key].font()
            font.setBold(True)
            self.rows[key].setFont(font)
        self.refused = QLabel()
        self.refused.setWordWrap(True)
        self.refused.setTextFormat(Qt.TextFormat.RichText)
        self.refused.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        grid.addWidget(self.refused, 1, 0, len(_ROWS), 2, Qt.AlignmentFlag.AlignTop)
        grid.setColumnStretch(1, 1)

    def show_side(self, side: Side | None, selected: bool) -> None:
        """Fill the rows from ``side``'s plan, or say why it is refused."""
        self.side, self.selected = side, selected
        self.figures = figures(side) if side is not None else None
        title = _TITLES[self.operation]
        hint = "selected" if selected else "click to switch"
        self.title.setText(f"<b>{title}</b> <small>({hint})</small>")
        self.setProperty("selected", selected)
        cursor = Qt.CursorShape.ArrowCursor if selected else Qt.CursorShape.PointingHandCursor
        self.setCursor(cursor)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus if selected else Qt.FocusPolicy.StrongFocus)
        self.setToolTip("" if selected else f"Switch to {title.lower()}: this very plan runs")
        self.style().unpolish(self)
        self.style().polish(self)
        found = self.figures
        for widget in (*self.rows.values(), *self.keys.values()):
            widget.setVisible(found is not None)
        self.refused.setVisible(found is None)
        if found is None or side is None:
            words, details = humane_plan_error(side.error) if side and side.error else ("", "")
            self.refused.setText(f"<b>Refused:</b> {html.escape(words or 'nothing to plan')}")
            self.refused.setToolTip(details)
            return
        self._fill(side, found)

    def _fill(self, side: Side, found: Figures) -> None:
        risk, risk_tip = _risk_text(found)
        deletable, deletable_tip = _deletable_text(side, found)
        invalid = names(found.invalid) if found.invalid else "none"
        invalid_tip = "Reading through them now returns data written above them."
        texts = {
            "copy": (_copy_text(found), ""),
            "risk": (risk, risk_tip),
            "valid": (_valid_text(side, found), ""),
            "invalid": (invalid, invalid_tip if found.invalid else ""),
            "deletable": (deletable, deletable_tip),
        }
        for key, (text, tip) in texts.items():
            self.rows[key].set_full(text, tip)

    def row_text(self, key: str) -> str:
        """A row's whole text, or the refusal (for tests and screen readers)."""
        if self.refused.isVisibleTo(self):
            return html.unescape(re.sub(r"<[^>]+>", "", self.refused.text()))
        return self.rows[key].full

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        """A click on the other direction switches to it."""
        if event.button() is Qt.MouseButton.LeftButton and not self.selected:
            self.chosen.emit(self.operation.value)
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Space or Enter on the focused other column switches, as a button would."""
        keys = (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if event.key() in keys and not self.selected:
            self.chosen.emit(self.operation.value)
            return
        super().keyPressEvent(event)


class DirectionCompare(QWidget):
    """Commit | Pull for the current selection; the selected direction is highlighted."""

    direction_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Both directions")
        self.columns = {op: DirectionColumn(op) for op in (Operation.COMMIT, Operation.PULL)}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        for column in self.columns.values():
            column.chosen.connect(self.direction_chosen)
            layout.addWidget(column, 1)
        self.setStyleSheet(
            'QFrame#directionColumn[selected="true"] { border: 2px solid palette(highlight); '
            "border-radius: 4px; }"
            'QFrame#directionColumn[selected="false"] { border: 1px dashed palette(mid); '
            "border-radius: 4px; }"
            'QFrame#directionColumn[selected="false"]:hover { border: 1px solid '
            "palette(highlight); }"
        )
        self.hide()

    def column(self, operation: Operation) -> DirectionColumn:
        """The column of ``operation``."""
        return self.columns[operation]

    def show_sides(self, sides: Sides | None) -> None:
        """Both columns from ``sides``; hidden while nothing is selected."""
        self.setVisible(sides is not None)
        if sides is None:
            return
        for operation, column in self.columns.items():
            column.show_side(sides.side(operation), operation is sides.selected)
