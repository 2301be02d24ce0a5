"""Set operations over bytes for the exposure walk: exact sorted ranges, or packed bitmaps."""

from __future__ import annotations

from collections.abc import Iterable

from backchain.core.bitmap import Bitmap, bitmap_of
from backchain.core.extents import ExtentSet, union_all
from backchain.core.graph import Layer
from backchain.core.static_typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from backchain.core.bitmap import Words

T = TypeVar("T")


class Algebra(Protocol[T]):
    """The set operations the walk needs, over some representation T of a set of bytes."""

    def own(self, layer: Layer, extents: ExtentSet) -> T:
        """The layer's own allocation in this representation."""

    def union(self, items: Iterable[T]) -> T:
        """Bytes in any of the items."""

    def minus(self, a: T, b: T) -> T:
        """Bytes in ``a`` but not in ``b``."""

    def minus_size(self, a: T, b: T, limit: int) -> int:
        """Bytes below ``limit`` in ``a`` but not in ``b``, without keeping the difference."""

    def size_below(self, a: T, limit: int) -> int:
        """Bytes of ``a`` below ``limit``."""

    def is_empty(self, a: T) -> bool:
        """Whether ``a`` holds no byte."""

    def convert(self, extents: ExtentSet) -> T:
        """Any set of bytes (a snapshot's allocation, a span) in this representation."""

    def clip(self, a: T, limit: int) -> T:
        """Bytes of ``a`` below ``limit``."""


class RangeAlgebra:
    """Exact sorted-range operations; works for any alignment."""

    def own(self, layer: Layer, extents: ExtentSet) -> ExtentSet:
        """The extents themselves."""
        return extents

    def union(self, items: Iterable[ExtentSet]) -> ExtentSet:
        """One sort of all boundaries."""
        return union_all(items)

    def minus(self, a: ExtentSet, b: ExtentSet) -> ExtentSet:
        """A sweep over both sets."""
        return a.difference(b)

    def minus_size(self, a: ExtentSet, b: ExtentSet, limit: int) -> int:
        """Size only: |a below limit| minus the overlap."""
        return a.clip(limit).difference_size(b)

    def size_below(self, a: ExtentSet, limit: int) -> int:
        """Clipped size."""
        return a.size_below(limit)

    def is_empty(self, a: ExtentSet) -> bool:
        """No range."""
        return len(a) == 0

    def convert(self, extents: ExtentSet) -> ExtentSet:
        """The extents themselves."""
        return extents

    def clip(self, a: ExtentSet, limit: int) -> ExtentSet:
        """The part below limit."""
        return a.clip(limit)


class Misaligned(Exception):
    """A layer's extents are finer than the bitmap's unit; the walk restarts with ``shift``."""

    def __init__(self, shift: int) -> None:
        super().__init__(shift)
        self.shift = shift


class BitmapAlgebra:
    """Packed bits of ``2**shift``-byte units below ``units``: word-wise AND/OR."""

    def __init__(self, shift: int, units: int) -> None:
        self.shift = shift
        self.units = units
        self._scratch: Words | None = None

    def own(self, layer: Layer, extents: ExtentSet) -> Bitmap:
        """Convert, or raise Misaligned when the layer has finer boundaries than a unit."""
        if not extents.aligned_to(self.shift):
            raise Misaligned(extents.alignment_shift)
        return bitmap_of(extents, self.shift, self.units)

    def union(self, items: Iterable[Bitmap]) -> Bitmap:
        """Word-wise OR into one new array, one item at a time (a generator never holds them
        all)."""
        return Bitmap.union_of(items, self.shift, self.units)

    def minus(self, a: Bitmap, b: Bitmap) -> Bitmap:
        """Word-wise AND NOT."""
        return a.minus(b)

    def minus_size(self, a: Bitmap, b: Bitmap, limit: int) -> int:
        """Popcount of the AND NOT below limit, in a buffer kept for the next count."""
        if self._scratch is None:
            import numpy as np

            self._scratch = np.empty_like(a.words)
        return a.minus_size_below(b, limit, self._scratch)

    def size_below(self, a: Bitmap, limit: int) -> int:
        """Popcount below limit."""
        return a.size_below(limit)

    def is_empty(self, a: Bitmap) -> bool:
        """No bit set."""
        return not a.any()

    def convert(self, extents: ExtentSet) -> Bitmap:
        """Convert, or raise Misaligned when the set has finer boundaries than a unit."""
        if not extents.aligned_to(self.shift):
            raise Misaligned(extents.alignment_shift)
        return bitmap_of(extents, self.shift, self.units)

    def clip(self, a: Bitmap, limit: int) -> Bitmap:
        """AND NOT the units from ``limit`` on (Misaligned when limit splits a unit)."""
        end = self.units << self.shift
        if limit >= end:
            return a
        return a.minus(self.convert(ExtentSet.span(max(limit, 0), end)))
