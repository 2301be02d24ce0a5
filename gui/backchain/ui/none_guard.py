"""Keeps ``None`` alive under PySide6 builds whose void methods drop a reference to it."""

from __future__ import annotations

import ctypes
import sys

# PySide6 6.12.0 on CPython 3.11 returns None from every void method (QPainter.setPen,
# QObject.setObjectName, ...) without taking a reference, so each call lowers None's
# reference count by one; after some tens of thousands of calls (a few seconds of painting)
# CPython aborts with "none_dealloc: deallocating None". CPython 3.12 made None immortal
# (PEP 683), which hides the bug. On older interpreters we give None the same immortality by
# adding a huge number of references once; None is never freed anyway, so nothing else changes.
_HEADROOM = 1 << 60


def make_none_immortal() -> bool:
    """Add headroom to None's reference count on CPython < 3.12; True if it did so."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    refcount = ctypes.c_ssize_t.from_address(id(None))
    if refcount.value < _HEADROOM // 2:
        refcount.value += _HEADROOM
    return True


make_none_immortal()
