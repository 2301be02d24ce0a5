"""The preview's colour, legend text and short tag for each Role, readable on light and dark."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

from backchain.core.model import Role
from backchain.core.valueclass import valueclass


@valueclass(frozen=True)
class RoleStyle:
    """How one role looks: a strong colour for borders and swatches, a legend label, a tag."""

    colour: str
    legend: str
    tag: str


# Chosen from the Okabe-Ito set so that the common forms of colour blindness still tell them
# apart; each node also carries the tag as text, so colour is never the only signal.
# Deleted is the most alarming (a deep red), invalid and at risk are warm, stale is yellow,
# re-pointed is the only blue: selection and the active badge use neutral palette colours.
STYLES: dict[Role, RoleStyle] = {
    Role.DELETED: RoleStyle("#C0182A", "deleted", "DELETED"),
    Role.INVALID: RoleStyle("#D55E00", "invalid now", "INVALID"),
    Role.AT_RISK: RoleStyle("#CC79A7", "sibling at risk", "AT RISK"),
    Role.STALE: RoleStyle("#C9A227", "stale after the next write to base", "STALE"),
    Role.REBASED: RoleStyle("#0072B2", "re-pointed to base", "RE-POINTED"),
    Role.BASE: RoleStyle("#009E73", "base: receives the data", "BASE"),
    Role.UNTOUCHED: RoleStyle("#8C8C8C", "untouched", ""),
}

LEGEND_ORDER = (
    Role.DELETED,
    Role.INVALID,
    Role.AT_RISK,
    Role.STALE,
    Role.REBASED,
    Role.BASE,
    Role.UNTOUCHED,
)


def role_colour(role: Role, palette: QPalette) -> QColor:
    """The swatch colour of ``role``; untouched takes the palette's neutral mid tone."""
    if role is Role.UNTOUCHED:
        return palette.color(QPalette.ColorRole.Mid)
    return QColor(STYLES[role].colour)


def mix(under: QColor, over: QColor, share: float) -> QColor:
    """``over`` laid over ``under`` at ``share`` opacity."""
    return QColor(
        round(under.red() + (over.red() - under.red()) * share),
        round(under.green() + (over.green() - under.green()) * share),
        round(under.blue() + (over.blue() - under.blue()) * share),
    )


def selection_colour(palette: QPalette) -> QColor:
    """The top/base outline: the palette's text colour, strong on light and dark cards alike."""
    return palette.color(QPalette.ColorRole.Text)


def is_dark(palette: QPalette) -> bool:
    """Whether the system palette is a dark one."""
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def border_colour(role: Role, palette: QPalette) -> QColor:
    """The node outline for ``role``; untouched nodes use the palette's own mid tone."""
    if role is Role.UNTOUCHED:
        return palette.color(QPalette.ColorRole.Mid)
    colour = QColor(STYLES[role].colour)
    base = palette.color(QPalette.ColorRole.Base)
    # Outlines must stand out from the card's surroundings (WCAG's 3:1 for graphics): amber on
    # white is too faint, so it is darkened on light palettes and lightened on dark ones.
    for _ in range(12):
        if contrast(colour, base) >= 3.0:
            break
        colour = colour.lighter(110) if is_dark(palette) else colour.darker(110)
    return colour


def readable(colour: QColor, palette: QPalette, ratio: float = 4.5) -> QColor:
    """``colour`` lightened (dark palettes) or darkened until text in it reads on the window."""
    window = palette.color(QPalette.ColorRole.Window)
    for _ in range(16):
        if contrast(colour, window) >= ratio:
            break
        colour = colour.lighter(112) if is_dark(palette) else colour.darker(112)
    return colour


def fill_colour(role: Role, palette: QPalette) -> QColor:
    """A tint of the role colour over the palette's base, so text stays readable."""
    base = palette.color(QPalette.ColorRole.Base)
    if role is Role.UNTOUCHED:
        return base
    return mix(base, QColor(STYLES[role].colour), 0.32 if is_dark(palette) else 0.22)


def _luminance(colour: QColor) -> float:
    """WCAG relative luminance."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(colour.redF())
        + 0.7152 * channel(colour.greenF())
        + 0.0722 * channel(colour.blueF())
    )


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio between two colours, 1 to 21."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_on(colour: QColor) -> QColor:
    """Black or white, whichever reads better on ``colour`` (badge and tag labels)."""
    black, white = QColor("black"), QColor("white")
    return black if contrast(black, colour) >= contrast(white, colour) else white


def dark_palette() -> QPalette:
    """A dark palette as a desktop in dark mode hands it to Qt (screenshots and tests)."""
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2b",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1e1e",
        QPalette.ColorRole.AlternateBase: "#333333",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#3a3a3a",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#3d8fd6",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Mid: "#5a5a5a",
        QPalette.ColorRole.PlaceholderText: "#9a9a9a",
        QPalette.ColorRole.ToolTipBase: "#333333",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
        QPalette.ColorRole.Light: "#505050",
        QPalette.ColorRole.Midlight: "#444444",
        QPalette.ColorRole.Dark: "#1a1a1a",
        QPalette.ColorRole.Shadow: "#000000",
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Link: "#6cb4ff",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#777777"))
    return palette
