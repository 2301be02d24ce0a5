"""One layer drawn as a card: name, format and size, allocation bar, badges and preview role."""

from __future__ import annotations

import html

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QGuiApplication, QPainter, QPalette, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from backchain.core.describe import internal_snapshots_text, named_snapshot_lines
from backchain.core.graph import Layer
from backchain.core.model import Role
from backchain.ui.roles import STYLES, border_colour, fill_colour, selection_colour, text_on
from backchain.ui.text import human_bytes, percent

NODE_WIDTH = 260.0
NODE_HEIGHT = 96.0
SNAPSHOT_LINE = 15.0
"""Each line of snapshots below the badges makes the card this much taller."""
_PAD = 10.0
_MAX_NAMED_LINES = 2


def snapshot_lines(layer: Layer) -> list[str]:
    """The card's snapshot lines: libvirt's (two at most, then how many more), then internal."""
    named = named_snapshot_lines(layer)
    if len(named) > _MAX_NAMED_LINES:
        more = len(named) - _MAX_NAMED_LINES + 1
        named = [*named[: _MAX_NAMED_LINES - 1], f"+{more} more libvirt snapshots (tooltip)"]
    internal = internal_snapshots_text(layer)
    return [*named, *([internal] if internal else [])]


def card_height(layer: Layer) -> float:
    """A card's height: the fixed part, and a line per snapshot line."""
    return NODE_HEIGHT + SNAPSHOT_LINE * len(snapshot_lines(layer))


def layer_tooltip(layer: Layer, active: bool, mark: str = "") -> str:
    """Full path, backing name as written, backing format, and whether it is relative."""
    rows = [("Path", layer.path), ("Format", layer.format)]
    if mark:
        rows.insert(0, ("After Backchain's last commit", mark))
    if layer.node_name:
        rows.append(("Live QMP node", layer.node_name))
    if layer.extra.get("label"):
        rows.append(("libvirt index", layer.extra["label"]))
    if layer.backing_name:
        rows += [
            ("Backing name (as written)", layer.backing_name),
            ("Backing format", layer.backing_format or "not recorded"),
            ("Backing path is", "relative" if layer.backing_is_relative else "absolute"),
            ("Resolves to", layer.backing_path or "missing"),
        ]
    else:
        rows.append(("Backing file", "none (bottom of the chain)"))
    rows.append(("Virtual size", human_bytes(layer.virtual_size)))
    rows.append(("Allocated here", human_bytes(layer.allocated_bytes)))
    flags = [("active layer" if active else ""), ("in use (locked)" if layer.in_use else "")]
    flags += [
        "read-only" if not layer.writable else "",
        "found by scan" if layer.found_by_scan else "",
    ]
    if any(flags):
        rows.append(("State", ", ".join(f for f in flags if f)))
    rows += [("libvirt snapshot", line) for line in named_snapshot_lines(layer)]
    if layer.snapshots:
        rows.append(("Internal snapshots", internal_snapshots_text(layer).split(": ", 1)[1]))
    body = "".join(
        f"<tr><td><b>{html.escape(k)}</b>&nbsp;</td><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


class NodeItem(QGraphicsItem):
    """A card for one layer; it paints vector shapes only, so it stays sharp at any DPI."""

    def __init__(self, layer: Layer, active: bool) -> None:
        super().__init__()
        self.role = Role.UNTOUCHED
        self.is_top = False
        self.is_base = False
        self.focused = False
        self.mark = ""
        """The ledger's word on this file ("invalid since commit into base.qcow2 on …")."""
        self.display_name = layer.name
        self.height: float = card_height(layer)
        self.lines: list[str] = []
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.set_layer(layer, active)

    def set_layer(self, layer: Layer, active: bool, mark: str | None = None) -> None:
        """New data for the same file (allocation arrived, or the file was re-read)."""
        if card_height(layer) != self.height:
            self.prepareGeometryChange()
        self.layer = layer
        self.active = active
        self.lines = snapshot_lines(layer)
        self.height = card_height(layer)
        if mark is not None:
            self.mark = mark
        self.setToolTip(layer_tooltip(layer, active, self.mark))
        self.update()

    def set_focused(self, focused: bool) -> None:
        """The keyboard's current node: drawn with a dashed focus ring."""
        if focused != self.focused:
            self.focused = focused
            self.update()

    def set_state(self, role: Role, is_top: bool, is_base: bool) -> None:
        """The preview's role and whether this layer is the chosen top or base."""
        if (role, is_top, is_base) != (self.role, self.is_top, self.is_base):
            self.role, self.is_top, self.is_base = role, is_top, is_base
            self.update()

    def boundingRect(self) -> QRectF:
        """The card plus room for the selection outline."""
        return QRectF(-4, -4, NODE_WIDTH + 8, self.height + 8)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        """Draw the card; when zoomed far out only the box and the name, to stay fast."""
        palette = QGuiApplication.palette()
        text = palette.color(QPalette.ColorRole.Text)
        card = QRectF(0, 0, NODE_WIDTH, self.height)
        selected = self.is_top or self.is_base
        outline = selection_colour(palette) if selected else border_colour(self.role, palette)
        pen = QPen(outline, 3.0 if selected else 1.5)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(fill_colour(self.role, palette))
        painter.drawRoundedRect(card, 8, 8)
        if self.focused:
            ring = QPen(palette.color(QPalette.ColorRole.Highlight), 2.0, Qt.PenStyle.DashLine)
            ring.setCosmetic(True)
            painter.setPen(ring)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(card.adjusted(-3, -3, 3, 3), 10, 10)
        if self.role is not Role.UNTOUCHED:
            # A solid stripe on the left keeps the role visible even when the tint is faint.
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(border_colour(self.role, palette))
            painter.drawRoundedRect(QRectF(0, 0, 7, self.height), 3, 3)

        detail = option.levelOfDetailFromTransform(painter.worldTransform())
        base_font = QFont(painter.font())
        bold = QFont(base_font)
        bold.setBold(True)
        inner = card.adjusted(_PAD + 4, _PAD - 2, -_PAD, -_PAD)
        painter.setPen(text)
        painter.setFont(bold)
        metrics = QFontMetricsF(bold)
        tag = STYLES[self.role].tag
        tag_width = self._tag_width(tag, base_font) if tag and detail >= 0.45 else 0.0
        name = metrics.elidedText(
            self.display_name, Qt.TextElideMode.ElideMiddle, inner.width() - tag_width
        )
        line = metrics.height()
        painter.drawText(QRectF(inner.left(), inner.top(), inner.width(), line), name)
        if detail < 0.45:
            return
        if tag:
            self._pill(
                painter,
                inner.right() - tag_width + 6,
                inner.top(),
                tag,
                STYLES[self.role].colour,
                base_font,
            )

        y = self._paint_details(painter, palette, inner, inner.top() + line + 2, base_font)
        self._paint_badges(painter, palette, inner.left(), y, base_font)
        self._paint_snapshots(painter, palette, inner, base_font)

    def _paint_snapshots(
        self, painter: QPainter, palette: QPalette, inner: QRectF, base_font: QFont
    ) -> None:
        """The snapshot lines, at the bottom of the taller card, elided to its width."""
        small = QFont(base_font)
        small.setPointSizeF(max(6.0, base_font.pointSizeF() * 0.85))
        metrics = QFontMetricsF(small)
        painter.setFont(small)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        y = NODE_HEIGHT - _PAD + 2
        for line in self.lines:
            text = metrics.elidedText(line, Qt.TextElideMode.ElideRight, inner.width())
            painter.drawText(QRectF(inner.left(), y, inner.width(), SNAPSHOT_LINE), text)
            y += SNAPSHOT_LINE

    def _paint_details(
        self, painter: QPainter, palette: QPalette, inner: QRectF, y: float, base_font: QFont
    ) -> float:
        """Format and size, then the allocation bar; returns where the badges go."""
        text = palette.color(QPalette.ColorRole.Text)
        small = QFont(base_font)
        small.setPointSizeF(max(6.0, base_font.pointSizeF() * 0.9))
        painter.setFont(small)
        painter.setPen(text)
        small_line = QFontMetricsF(small).height()
        size = f"{self.layer.format} · {human_bytes(self.layer.virtual_size)} virtual"
        painter.drawText(QRectF(inner.left(), y, inner.width(), small_line), size)
        y += small_line + 4

        allocated = self.layer.allocated_bytes
        bar = QRectF(inner.left(), y + 3, 86, 8)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
        painter.setBrush(palette.color(QPalette.ColorRole.AlternateBase))
        painter.drawRect(bar)
        if allocated is not None and self.layer.virtual_size > 0:
            share = min(1.0, allocated / self.layer.virtual_size)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
            painter.drawRect(
                QRectF(bar.left(), bar.top(), max(1.0, bar.width() * share), bar.height())
            )
        painter.setPen(text)
        own = (
            "allocation: reading…"
            if allocated is None
            else f"{human_bytes(allocated)} own · {percent(allocated, self.layer.virtual_size)}"
        )
        painter.drawText(QRectF(bar.right() + 8, y, inner.width() - 94, small_line), own)
        return y + small_line + 5

    def _paint_badges(
        self, painter: QPainter, palette: QPalette, x: float, y: float, base_font: QFont
    ) -> None:
        """top, base, the ledger's mark, active, live node, libvirt index, in use, read-only."""
        badges: list[tuple[str, str]] = []
        chosen = selection_colour(palette).name()
        if self.is_top:
            badges.append(("top", chosen))
        if self.is_base:
            badges.append(("base", chosen))
        if self.mark:
            badges.append((self.mark.split(" since ")[0], "#7A3E00"))
        if self.active:
            badges.append(("active", "#6B6B6B"))
        if self.layer.node_name:
            badges.append((f"live: {self.layer.node_name}", "#009E73"))
        if self.layer.extra.get("label"):
            badges.append((self.layer.extra["label"], "#0072B2"))
        if self.layer.in_use:
            badges.append(("in use", "#D55E00"))
        if not self.layer.writable:
            badges.append(("read-only", "#6B6B6B"))
        for label, colour in badges:
            x += self._pill(painter, x, y, label, colour, base_font) + 6

    @staticmethod
    def _tag_width(label: str, font: QFont) -> float:
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.75))
        small.setBold(True)
        return QFontMetricsF(small).horizontalAdvance(label) + 16

    @staticmethod
    def _pill(painter: QPainter, x: float, y: float, label: str, colour: str, font: QFont) -> float:
        """A small rounded label; returns its width."""
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.75))
        small.setBold(True)
        metrics = QFontMetricsF(small)
        rect = QRectF(x, y, metrics.horizontalAdvance(label) + 10, metrics.height() + 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
        painter.setFont(small)
        painter.setPen(text_on(QColor(colour)))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        return rect.width()
