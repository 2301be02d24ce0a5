"""The preview in words: consequences with bytes, bytes to copy, advice, the exact commands."""

from __future__ import annotations

import html
import os.path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from backchain.core.advice import advise
from backchain.core.describe import direction_line, effects
from backchain.core.model import CommitPlan, Operation, Role
from backchain.ui.direction_compare import DirectionCompare
from backchain.ui.direction_figures import Sides
from backchain.ui.roles import LEGEND_ORDER, STYLES
from backchain.ui.text import human_bytes, percent

SHOWN_FIRST = (Role.AT_RISK, Role.BASE, Role.DELETED, Role.INVALID, Role.STALE, Role.REBASED)
"""The consequences list order: siblings at risk first, since they are easiest to overlook."""
ADVICE_LINES = 5
"""The advice box scrolls beyond this many lines, so 30 merged layers never push the window."""
CONFIRM_MS = 1500

ROLE_DATA = Qt.ItemDataRole.UserRole + 1


def swatch(colour: str, size: int = 14) -> QIcon:
    """A small filled square, drawn at the screen's pixel ratio so it is crisp on HiDPI."""
    ratio = (
        QGuiApplication.primaryScreen().devicePixelRatio()
        if QGuiApplication.primaryScreen()
        else 1.0
    )
    pixmap = QPixmap(round(size * ratio), round(size * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QColor(colour).darker(130))
    painter.setBrush(QColor(colour))
    painter.drawRoundedRect(1, 1, size - 2, size - 2, 3, 3)
    painter.end()
    return QIcon(pixmap)


def _name(path: str) -> str:
    return os.path.basename(path)


def _line_images(plan: CommitPlan) -> list[str]:
    """The image each of describe.effects' lines is about, in its order."""
    return [
        plan.base,
        *(a.image for a in plan.invalid),
        *plan.stale,
        *(r.image for r in plan.rebased),
        *(a.image for a in plan.at_risk),
        *plan.deleted,
    ]


def _short_base_line(plan: CommitPlan) -> str:
    """What base receives; a long chain's merged layers are counted, not all named."""
    if len(plan.merged) <= 3:
        return effects(plan)[0][1]
    return (
        f"{_name(plan.base)}: receives {human_bytes(plan.bytes_to_copy)} from "
        f"{_name(plan.top)} and the {len(plan.merged) - 1} layers below it"
    )


def consequences(plan: CommitPlan) -> list[tuple[Role, str]]:
    """One sentence per image (the CLI's words), with the one role the graph shows it in.

    A layer that is both stale and deleted is listed as deleted only; siblings at risk come
    first.
    """
    roles = plan.roles()
    lines = effects(plan)
    images = _line_images(plan)
    if len(images) != len(lines):  # wording changed shape: show it all rather than guess
        return lines
    kept = [
        (role, _short_base_line(plan) if role is Role.BASE else text)
        for (role, text), image in zip(lines, images, strict=True)
        if role is Role.BASE or roles.get(image) is role
    ]
    return sorted(kept, key=lambda line: SHOWN_FIRST.index(line[0]))


class _CommandsView(QPlainTextEdit):
    """The commands box: tall enough for a typical plan without a vertical scroll bar."""

    MAX_LINES = 6
    """Commit, re-points, verify and deletes: beyond this the box scrolls."""

    def sizeHint(self) -> QSize:
        """One line per command (2 to MAX_LINES), the frame and the horizontal scroll bar."""
        count = min(self.MAX_LINES, max(2, self.document().blockCount()))
        scroll = self.horizontalScrollBar().sizeHint().height()
        height = self.fontMetrics().lineSpacing() * count + 2 * self.frameWidth() + 10
        return QSize(300, height + scroll)

    def minimumSizeHint(self) -> QSize:
        """Two lines, when the user drags the splitter."""
        return QSize(120, self.fontMetrics().lineSpacing() * 2 + 24)


class Legend(QLabel):
    """A swatch and a label for every role; the items wrap, so the legend never sets the
    window's width (a grid of four columns made it wider than a scaled 1280-px screen)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Preview legend")
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setContentsMargins(6, 2, 6, 2)
        items = []
        for role in LEGEND_ORDER:
            style = STYLES[role]
            words = f"{style.legend} ({style.tag})" if style.tag else style.legend
            words = html.escape(words).replace(" ", "&nbsp;")
            items.append(f'<span style="color:{style.colour}">&#9632;</span>&nbsp;{words}')
        self.setText(" &nbsp;&nbsp; ".join(items))
        self.roles = list(LEGEND_ORDER)


class PreviewPanel(QGroupBox):
    """Renders one CommitPlan (the very object that will run) or says why there is none."""

    delete_leftovers_clicked = Signal()
    """The user wants the same commit previewed with DELETE (the leftovers removed)."""
    direction_chosen = Signal(str)
    """The advice's button was pressed: ``commit`` or ``pull``, for the plan panel's switch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Preview", parent)
        self.plan: CommitPlan | None = None
        self.advised = QPushButton()
        self.advised.setAccessibleName("Switch to the advised direction")
        self.advised.hide()
        self.advised.clicked.connect(self._on_advised_clicked)
        self.summary = QLabel("Open an image to see what a commit would do.")
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("Commit summary")
        self.note = QLabel()
        self.note.setObjectName("previewNote")
        self.note.setWordWrap(True)
        self.note.setAccessibleName("Already done")
        self.note.hide()
        self.leftovers_button = QPushButton("Delete the leftovers…")
        self.leftovers_button.setAccessibleName("Delete the leftovers")
        self.leftovers_button.clicked.connect(self.delete_leftovers_clicked)
        self.leftovers_button.hide()
        self.compare = DirectionCompare()
        self.compare.direction_chosen.connect(self.direction_chosen)
        self.list = QListWidget()
        self.list.setAccessibleName("Consequences")
        self.list.setToolTip("What the commit does to each image, with the bytes affected.")
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        # The swatch's logical size: left to the style, HiDPI scaling drew it at twice that.
        self.list.setIconSize(QSize(14, 14))
        self._build_advice()
        self._build_commands()

        lines = self.commands.fontMetrics().lineSpacing()
        self.list.setMinimumHeight(lines * 4)
        # The list takes every spare pixel; advice and commands keep their natural height, so
        # a typical plan's commands show without a vertical scroll bar.
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        note_row = QHBoxLayout()
        note_row.addWidget(self.note, 1)
        note_row.addWidget(self.leftovers_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(note_row)
        layout.addWidget(self.compare)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.advice_box)
        advised_row = QHBoxLayout()
        advised_row.addStretch(1)
        advised_row.addWidget(self.advised)
        layout.addLayout(advised_row)
        layout.addWidget(QLabel("<b>Commands</b>"))
        layout.addWidget(self.commands)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.copy_commands)
        row.addWidget(self.copy_script)
        layout.addLayout(row)
        self.show_plan(None)

    def _build_advice(self) -> None:
        """The pull-or-commit advice, scrolled inside its own box."""
        self.advice = QLabel()
        self.advice.setWordWrap(True)
        self.advice.setAccessibleName("Pull or commit advice")
        self.advice.setTextFormat(Qt.TextFormat.RichText)
        self.advice.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.advice_box = QScrollArea()
        self.advice_box.setWidget(self.advice)
        self.advice_box.setWidgetResizable(True)
        self.advice_box.setFrameShape(QScrollArea.Shape.NoFrame)
        self.advice_box.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.advice_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def _build_commands(self) -> None:
        """The exact commands, with the two copy buttons."""
        self.commands = _CommandsView()
        self.commands.setReadOnly(True)
        self.commands.setAccessibleName("Commands")
        self.commands.setToolTip("The exact commands the commit runs, in order.")
        self.commands.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.commands.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_commands = QPushButton("Copy commands")
        self.copy_commands.setAccessibleName("Copy commands")
        self.copy_commands.setToolTip("Copy the commands to the clipboard.")
        self.copy_commands.clicked.connect(self._on_copy_commands_clicked)
        self.copy_script = QPushButton("Copy as shell script")
        self.copy_script.setAccessibleName("Copy as shell script")
        self.copy_script.setToolTip("A POSIX sh script with set -e that runs the same steps.")
        self.copy_script.clicked.connect(self._on_copy_script_clicked)

    def show_plan(
        self, plan: CommitPlan | None, error: str | None = None, sides: Sides | None = None
    ) -> None:
        """Show ``plan``; with None, say why (``error``) and clear the rest. ``sides`` holds it
        and the other direction's real plan (or refusal), for the two columns."""
        self.plan = plan
        self.compare.show_sides(sides)
        self.list.clear()
        has_plan = plan is not None
        self.copy_commands.setEnabled(has_plan)
        self.copy_script.setEnabled(has_plan)
        if plan is None:
            self.summary.setText(
                "No commit possible with this selection; see the message above."
                if error
                else "Open an image to see what a commit would do."
            )
            self.advice.clear()
            self.advice_box.hide()
            self.advised.hide()
            self.commands.clear()
            return
        self._show_advised(plan, sides)
        if plan.operation is Operation.PULL:
            self.summary.setText(self._pull_summary(plan))
        else:
            self.summary.setText(
                f"<b>Commit {_name(plan.top)} → {_name(plan.base)}</b>: "
                f"{len(plan.merged)} layer{'s' if len(plan.merged) != 1 else ''} merged, "
                f"<b>{human_bytes(plan.bytes_to_copy)}</b> to copy."
            )
        for role, text in consequences(plan):
            item = QListWidgetItem(swatch(STYLES[role].colour), text)
            item.setData(ROLE_DATA, role.value)
            self.list.addItem(item)
        for note in plan.notes:
            self.list.addItem(QListWidgetItem(f"Note: {note}"))
        self._show_advice(self._advice_html(plan), len(plan.advice))
        self.commands.setPlainText("\n".join(step.as_shell() for step in plan.steps))
        self.commands.updateGeometry()  # its height follows the number of commands

    @staticmethod
    def _pull_summary(plan: CommitPlan) -> str:
        below = f"stays on {_name(plan.base)}" if plan.base else "becomes standalone"
        count = len(plan.merged)
        return (
            f"<b>Pull into {_name(plan.top)}</b>: {count} layer"
            f"{'s leave' if count != 1 else ' leaves'} its chain, "
            f"<b>{human_bytes(plan.bytes_to_copy)}</b> to copy; "
            f"{_name(plan.top)} {below}. Nothing is at risk."
        )

    def _show_advised(self, plan: CommitPlan, sides: Sides | None) -> None:
        """The button that switches to the advised direction, when that is not the shown one;
        disabled, saying why, when the advised direction is refused with these options."""
        choice = advise(plan)
        if choice is None or choice.operation is plan.operation:
            self.advised.hide()
            return
        refusal = sides.side(choice.operation).error if sides is not None else None
        self.advised.setText(f"Switch to {choice.operation.value}")
        self.advised.setProperty("operation", choice.operation.value)
        self.advised.setEnabled(refusal is None)
        self.advised.setToolTip(
            f"{choice.operation.value.capitalize()} is refused with these options: {refusal}"
            if refusal
            else f"Preview the {choice.operation.value} of the same selection"
        )
        self.advised.show()

    def _on_advised_clicked(self) -> None:
        self.direction_chosen.emit(str(self.advised.property("operation")))

    @staticmethod
    def _advice_html(plan: CommitPlan) -> str:
        line = direction_line(plan)
        both = f"<br><b>{html.escape(line)}</b>" if line else ""
        if plan.operation is Operation.PULL:
            return "<b>Pull or commit</b>" + both if both else ""
        if both:  # the selection's advice; each layer's own rule of thumb could contradict it
            return "<b>Pull or commit</b>" + both
        rows = []
        for advice in plan.advice:
            share = percent(advice.allocated, advice.virtual_size)
            direction = advice.direction
            verdict = (
                "allocation unknown"
                if direction is None
                else f"commit copies {human_bytes(advice.commit_bytes)}, pull would copy "
                f"{human_bytes(advice.pull_bytes)}: <b>{direction}</b> is faster"
            )
            rows.append(f"{_name(advice.image)} ({share} allocated): {verdict}")
        if not rows and not both:
            return ""
        return "<b>Pull or commit</b>" + both + ("<br>" + "<br>".join(rows) if rows else "")

    def set_note(self, text: str, leftovers: list[str] | None = None) -> None:
        """A word above the consequences (this very commit already ran), or none; with
        ``leftovers``, an offer to delete them through the normal plan (DELETE)."""
        self.note.setText(f"<b>{html.escape(text)}</b>" if text else "")
        self.note.setVisible(bool(text))
        self.leftovers_button.setVisible(bool(leftovers))
        if leftovers:
            names = ", ".join(os.path.basename(p) for p in leftovers)
            self.leftovers_button.setToolTip(
                f"Preview the same commit with DELETE: {names} are removed once top's view "
                "is verified against base. Nothing else depends on them."
            )

    def _show_advice(self, text: str, rows: int) -> None:
        """The advice in a box that scrolls past ADVICE_LINES lines (at least two show)."""
        self.advice.setText(text)
        self.advice_box.setVisible(bool(text))
        line = self.advice.fontMetrics().lineSpacing()
        # Each layer's advice wraps to about two lines in the preview's column.
        self.advice_box.setMaximumHeight(line * (min(2 * rows, ADVICE_LINES) + 1) + 8)
        self.advice_box.setMinimumHeight(line * (min(2 * rows, 3) + 1) + 4)

    def lines(self) -> list[tuple[str, str]]:
        """(role, text) of every consequence line shown (for tests and screen readers)."""
        result = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            result.append((str(item.data(ROLE_DATA) or ""), item.text()))
        return result

    def _on_copy_commands_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.commands.toPlainText() + "\n")
        _confirm(self.copy_commands, "Copied ✓")

    def _on_copy_script_clicked(self) -> None:
        if self.plan is not None:
            QGuiApplication.clipboard().setText(self.plan.shell_script())
            _confirm(self.copy_script, "Script copied ✓")


def _confirm(button: QPushButton, text: str) -> None:
    """Say on the button that the copy happened, then put its own words back."""
    original = button.property("idleText") or button.text()
    button.setProperty("idleText", original)
    button.setText(text)
    QTimer.singleShot(CONFIRM_MS, button, lambda: button.setText(str(original)))
