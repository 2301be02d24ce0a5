"""Human-readable sizes, rates and durations for the window's labels."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(count: int | None) -> str:
    """``3.0 MiB``; an em dash while the figure is unknown."""
    if count is None:
        return "—"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


def human_rate(bytes_per_second: float) -> str:
    """``120.0 MiB/s``."""
    return human_bytes(int(bytes_per_second)) + "/s"


def human_duration(seconds: float) -> str:
    """``1 min 05 s`` or ``12 s``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def percent(part: int | None, whole: int) -> str:
    """``4.7%``; an em dash while unknown."""
    if part is None or whole <= 0:
        return "—"
    return f"{100.0 * part / whole:.1f}%"
