"""The preview in words: consequences with bytes, bytes to copy, advice, the exact commands."""

from __future__ import annotations

import html
import os.path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from backchain.core.advice import advise
from backchain.core.describe import direction_line, effects
from backchain.core.model import CommitPlan, Operation, Role
from backchain.ui.roles import LEGEND_ORDER, STYLES
from backchain.ui.text import human_bytes, percent

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


def consequences(plan: CommitPlan) -> list[tuple[Role, str]]:
    """Every effect of the plan as one sentence each (the CLI prints the same words)."""
    return effects(plan)


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


class Legend(QWidget):
    """A swatch and a label for every role the preview can show."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Preview legend")
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 2, 6, 2)
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(2)
        self.labels: dict[Role, QLabel] = {}
        for index, role in enumerate(LEGEND_ORDER):
            style = STYLES[role]
            icon = QLabel()
            icon.setPixmap(swatch(style.colour).pixmap(14, 14))
            label = QLabel(style.legend)
            self.labels[role] = label
            cell = QHBoxLayout()
            cell.setSpacing(5)
            cell.addWidget(icon)
            cell.addWidget(label)
            cell.addStretch(1)
            grid.addLayout(cell, index // 4, index % 4)


class PreviewPanel(QGroupBox):
    """Renders one CommitPlan (the very object that will run) or says why there is none."""

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
        self.list = QListWidget()
        self.list.setAccessibleName("Consequences")
        self.list.setToolTip("What the commit does to each image, with the bytes affected.")
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        # The swatch's logical size: left to the style, HiDPI scaling drew it at twice that.
        self.list.setIconSize(QSize(14, 14))
        self.advice = QLabel()
        self.advice.setWordWrap(True)
        self.advice.setAccessibleName("Pull or commit advice")
        self.advice.setTextFormat(Qt.TextFormat.RichText)
        self.commands = _CommandsView()
        self.commands.setReadOnly(True)
        self.commands.setAccessibleName("Commands")
        self.commands.setToolTip("The exact commands the commit runs, in order.")
        self.commands.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.commands.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_commands = QPushButton("Copy commands")
        self.copy_commands.setAccessibleName("Copy commands")
        self.copy_commands.clicked.connect(self._on_copy_commands_clicked)
        self.copy_script = QPushButton("Copy as shell script")
        self.copy_script.setAccessibleName("Copy as shell script")
        self.copy_script.setToolTip("A POSIX sh script with set -e that runs the same steps.")
        self.copy_script.clicked.connect(self._on_copy_script_clicked)

        lines = self.commands.fontMetrics().lineSpacing()
        self.list.setMinimumHeight(lines * 4)
        # The list takes every spare pixel; advice and commands keep their natural height, so
        # a typical plan's commands show without a vertical scroll bar.
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.advice)
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

    def show_plan(self, plan: CommitPlan | None, error: str | None = None) -> None:
        """Show ``plan``; with None, say why (``error``) and clear the rest."""
        self.plan = plan
        self.list.clear()
        has_plan = plan is not None
        self.copy_commands.setEnabled(has_plan)
        self.copy_script.setEnabled(has_plan)
        if plan is None:
            if error:
                self.summary.setText(
                    "No commit possible with this selection; see the message above."
                )
            self.advice.clear()
            self.advised.hide()
            self.commands.clear()
            return
        self._show_advised(plan)
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
        self.advice.setText(self._advice_html(plan))
        self.commands.setPlainText("\n".join(step.as_shell() for step in plan.steps))
        self.commands.updateGeometry()  # its height follows the number of commands

    @staticmethod
    def _pull_summary(plan: CommitPlan) -> str:
        below = f"stays on {_name(plan.base)}" if plan.base else "becomes standalone"
        count = len(plan.merged)
        return (
            f"<b>Pull into {_name(plan.top)}</b>: {count} layer{'s' if count != 1 else ''} "
            f"leave its chain, <b>{human_bytes(plan.bytes_to_copy)}</b> to copy; "
            f"{_name(plan.top)} {below}. Nothing is at risk."
        )

    def _show_advised(self, plan: CommitPlan) -> None:
        """The button that switches to the advised direction, when that is not the shown one."""
        choice = advise(plan)
        if choice is None or choice.operation is plan.operation:
            self.advised.hide()
            return
        self.advised.setText(f"Switch to {choice.operation.value}")
        self.advised.setProperty("operation", choice.operation.value)
        self.advised.show()

    def _on_advised_clicked(self) -> None:
        self.direction_chosen.emit(str(self.advised.property("operation")))

    @staticmethod
    def _advice_html(plan: CommitPlan) -> str:
        line = direction_line(plan)
        both = f"<br><b>{html.escape(line)}</b>" if line else ""
        if plan.operation is Operation.PULL:
            return "<b>Pull or commit</b>" + both if both else ""
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
        return "<b>Pull or commit</b><br>" + "<br>".join(rows) + both if rows else both

    def lines(self) -> list[tuple[str, str]]:
        """(role, text) of every consequence line shown (for tests and screen readers)."""
        result = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            result.append((str(item.data(ROLE_DATA) or ""), item.text()))
        return result

    def _on_copy_commands_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.commands.toPlainText() + "\n")

    def _on_copy_script_clicked(self) -> None:
        if self.plan is not None:
            QGuiApplication.clipboard().setText(self.plan.shell_script())
