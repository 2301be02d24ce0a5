"""Closable message strips above the graph, coloured from the palette so dark themes read them."""

from __future__ import annotations

import enum

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from backchain.ui.roles import is_dark, mix, text_on

PALETTE_EVENTS = (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)
"""A light/dark switch: the banners derive their colours again."""


class Tone(enum.Enum):
    """What a banner says: an error, a warning (an unfinished job), or news (a job's outcome)."""

    ERROR = "#D55E00"
    WARNING = "#E69F00"
    NEWS = "#009E73"


def banner_colours(tone: Tone, palette: QPalette) -> tuple[QColor, QColor, QColor]:
    """Background, text and border for ``tone`` on ``palette``: a tint of the tone over Base."""
    base = palette.color(QPalette.ColorRole.Base)
    strong = QColor(tone.value)
    if tone is Tone.ERROR:
        return strong, text_on(strong), strong.darker(120)
    background = mix(base, strong, 0.30 if is_dark(palette) else 0.22)
    return background, palette.color(QPalette.ColorRole.Text), strong


def style_frame(frame: QFrame, tone: Tone) -> None:
    """Apply ``tone``'s colours, derived from the application palette, to ``frame``.

    The application's palette, not the frame's: a style sheet changes the frame's own palette,
    and that change must not feed back (it arrives as another PaletteChange).
    """
    background, text, border = banner_colours(tone, QGuiApplication.palette())
    name = frame.objectName()
    sheet = (
        f"QFrame#{name} {{ background: {background.name()}; border: 1px solid {border.name()};"
        f" border-radius: 4px; }} QFrame#{name} QLabel {{ color: {text.name()};"
        f" background: transparent; border: none; }}"
    )
    if frame.styleSheet() != sheet:
        frame.setStyleSheet(sheet)


class MessageBanner(QFrame):
    """A word-wrapped, selectable message with a close button."""

    closed = Signal()

    def __init__(self, name: str, tone: Tone, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self._tone = tone
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setMinimumWidth(120)
        if tone is Tone.ERROR:
            self.label.setStyleSheet("font-weight: bold;")
        self.close_button = QPushButton("×")
        self.close_button.setFlat(True)
        self.close_button.setAccessibleName("Close message")
        self.close_button.setToolTip("Close this message")
        self.close_button.setFixedWidth(self.close_button.fontMetrics().height() * 2)
        self.close_button.clicked.connect(self._on_close_button_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        style_frame(self, tone)
        self.hide()

    def text(self) -> str:
        """The message shown."""
        return self.label.text()

    def show_message(self, text: str, details: str = "") -> None:
        """Show ``text``; ``details`` become the tooltip."""
        self.label.setText(text)
        self.setToolTip(details or text)
        style_frame(self, self._tone)  # the palette may have changed while it was hidden
        self.show()

    def setText(self, text: str) -> None:
        """Set the message without showing it."""
        self.label.setText(text)

    def changeEvent(self, event: QEvent) -> None:
        """A new palette (light/dark switch): derive the colours again."""
        super().changeEvent(event)
        if event.type() in PALETTE_EVENTS:
            style_frame(self, self._tone)

    def _on_close_button_clicked(self) -> None:
        self.hide()
        self.closed.emit()
