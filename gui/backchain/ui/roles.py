"""The preview's colour, legend text and short tag for each Role, readable on light and dark."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette

from backchain.core.model import Role


@dataclass(frozen=True)
class RoleStyle:
    """How one role looks: a strong colour for borders and swatches, a legend label, a tag."""

    colour: str
    legend: str
    tag: str


# Chosen from the Okabe-Ito set so that the common forms of colour blindness still tell them
# apart; each node also carries the tag as text, so colour is never the only signal.
STYLES: dict[Role, RoleStyle] = {
    Role.BASE: RoleStyle("#009E73", "merged into base", "BASE"),
    Role.INVALID: RoleStyle("#D55E00", "invalid now", "INVALID"),
    Role.STALE: RoleStyle("#E69F00", "stale after the next write to base", "STALE"),
    Role.REBASED: RoleStyle("#0072B2", "re-pointed to base", "RE-POINTED"),
    Role.AT_RISK: RoleStyle("#CC79A7", "sibling at risk", "AT RISK"),
    Role.DELETED: RoleStyle("#6B6B6B", "will be deleted", "DELETED"),
    Role.UNTOUCHED: RoleStyle("#8C8C8C", "untouched", ""),
}

LEGEND_ORDER = (
    Role.BASE,
    Role.INVALID,
    Role.STALE,
    Role.REBASED,
    Role.AT_RISK,
    Role.DELETED,
    Role.UNTOUCHED,
)


def is_dark(palette: QPalette) -> bool:
    """Whether the system palette is a dark one."""
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def border_colour(role: Role, palette: QPalette) -> QColor:
    """The node outline for ``role``; untouched nodes use the palette's own mid tone."""
    if role is Role.UNTOUCHED:
        return palette.color(QPalette.ColorRole.Mid)
    return QColor(STYLES[role].colour)


def fill_colour(role: Role, palette: QPalette) -> QColor:
    """A tint of the role colour over the palette's base, so text stays readable."""
    base = palette.color(QPalette.ColorRole.Base)
    if role is Role.UNTOUCHED:
        return base
    strong = QColor(STYLES[role].colour)
    share = 0.32 if is_dark(palette) else 0.22
    return QColor(
        round(base.red() + (strong.red() - base.red()) * share),
        round(base.green() + (strong.green() - base.green()) * share),
        round(base.blue() + (strong.blue() - base.blue()) * share),
    )
