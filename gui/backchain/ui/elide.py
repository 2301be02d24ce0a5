"""Short file names that keep visible what tells them apart (not just the common ends)."""

from __future__ import annotations

import os

LIMIT = 26
"""Characters that fit on a card beside its role tag, and in a combo box."""
_SEPARATORS = "-_. "


def _shared_start(texts: list[str]) -> str:
    """The characters every text starts with (plain strings, not paths)."""
    first, last = min(texts), max(texts)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), None)
    return first[: len(first) if size is None else size]


def _common_prefix(names: list[str]) -> str:
    prefix = _shared_start(names)
    # Back off to a separator, so that "01-15" is not shown as "1-15".
    cut = max(prefix.rfind(c) for c in _SEPARATORS) + 1 if prefix else 0
    return prefix[:cut]


def _common_suffix(names: list[str], prefix: int) -> str:
    reversed_names = [n[prefix:][::-1] for n in names]
    suffix = _shared_start(reversed_names)[::-1]
    cut = min((i for i, c in enumerate(suffix) if c in _SEPARATORS), default=len(suffix))
    return suffix[cut:]


def elide_middle(text: str, limit: int = LIMIT) -> str:
    """``prod-web…date.qcow2``: both ends kept when ``text`` is too long."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def _shorten(prefix: str, core: str, suffix: str, limit: int) -> str:
    """Shrink the shared ends first; the differing core goes last."""
    if len(prefix) + len(core) + len(suffix) <= limit:
        return prefix + core + suffix
    ext = os.path.splitext(suffix)[1] if suffix else ""
    room = limit - len(core)
    if len(prefix) > 5:
        prefix = prefix[:4] + "…"
    if len(prefix) + len(core) + len(suffix) > limit and len(suffix) > len(ext) + 1:
        keep = max(len(ext) + 1, room - len(prefix))
        if keep < len(suffix):
            tail = suffix[len(suffix) - keep + 1 :]
            # Start the kept tail at a separator, so no word is cut in half.
            cut = min((i for i, c in enumerate(tail) if c in _SEPARATORS), default=0)
            suffix = "…" + tail[cut:]
    text = prefix + core + suffix
    if len(text) > limit:
        text = prefix + elide_middle(core, max(6, limit - len(prefix) - len(suffix))) + suffix
    return text


def distinct_names(names: list[str], limit: int = LIMIT) -> list[str]:
    """Each name short enough for ``limit``, keeping the part that differs between them."""
    long = [n for n in names if len(n) > limit]
    if not long:
        return list(names)
    if len(set(long)) < 2:
        return [elide_middle(n, limit) for n in names]
    prefix = _common_prefix(long)
    suffix = _common_suffix(long, len(prefix))
    result = []
    for name in names:
        if len(name) <= limit:
            result.append(name)
            continue
        core = name[len(prefix) : len(name) - len(suffix)]
        result.append(_shorten(prefix, core, suffix, limit))
    return result
