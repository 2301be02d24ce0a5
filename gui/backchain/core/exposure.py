"""Which changed bytes each image would read from base after a commit: one walk over the tree."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from backchain.core.bitmap import Bitmap, bitmap_of
from backchain.core.extents import PURE_LIMIT, ExtentSet, union_all
from backchain.core.graph import ImageGraph, Layer

T = TypeVar("T")

# Building a bitmap touches one byte per unit and every operation units/64 words, while the
# sorted-range operations cost in proportion to the number of ranges: bitmaps are chosen
# while they stay small, or not much larger than the ranges they replace.
SMALL_BITMAP_UNITS = 1 << 21
MAX_BITMAP_UNITS = 1 << 26
_UNITS_PER_RANGE = 16
# The merged layers' bitmaps are used twice (for what changes, then on the walk); keep them
# only while that stays small, and convert them again otherwise.
_KEEP_BYTES = 256 << 20
_LARGEST_UNIT_SHIFT = 30
# Up to this many ranges in the merged layers and base, sorted ranges are cheap whatever the
# representation, and list-held sets keep the plan in pure Python (no numpy import).
FEW_RANGES = PURE_LIMIT


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


class Misaligned(Exception):
    """A layer's extents are finer than the bitmap's unit; the walk restarts with ``shift``."""

    def __init__(self, shift: int) -> None:
        super().__init__(shift)
        self.shift = shift


class BitmapAlgebra:
    """Packed bits of ``2**shift``-byte units below ``units``: word-wise AND/OR."""

    def __init__(self, shift: int, units: int, alignment: Callable[[Layer], int]) -> None:
        self.shift = shift
        self.units = units
        self._alignment = alignment

    def own(self, layer: Layer, extents: ExtentSet) -> Bitmap:
        """Convert, or raise Misaligned when the layer has finer boundaries than a unit."""
        found = self._alignment(layer)
        if found < self.shift:
            raise Misaligned(found)
        return bitmap_of(extents, self.shift, self.units)

    def union(self, items: Iterable[Bitmap]) -> Bitmap:
        """Word-wise OR, one item at a time (so a generator never holds them all)."""
        return Bitmap.union_of(items, self.shift, self.units)

    def minus(self, a: Bitmap, b: Bitmap) -> Bitmap:
        """Word-wise AND NOT."""
        return a.minus(b)

    def minus_size(self, a: Bitmap, b: Bitmap, limit: int) -> int:
        """Popcount of the AND NOT below limit."""
        return a.minus(b).size_below(limit)

    def size_below(self, a: Bitmap, limit: int) -> int:
        """Popcount below limit."""
        return a.size_below(limit)

    def is_empty(self, a: Bitmap) -> bool:
        """No bit set."""
        return not a.any()


@dataclass(frozen=True)
class Exposure:
    """The byte counts plan() reports; None wherever some extents are unknown."""

    bytes_to_copy: int | None
    exposed: dict[str, int | None]
    """Every image whose chain passes through base, except top and its dependants: how many
    changed bytes (below its virtual size) none of its layers above base hides."""
    pull_bytes: tuple[int | None, ...]
    """Per merged layer, top first: bytes beneath it (down to base) that it does not hide."""


class _Walk(Generic[T]):
    """One evaluation of the exposure with one algebra."""

    def __init__(self, algebra: Algebra[T], keep: bool = True) -> None:
        self.algebra = algebra
        self._keep = keep
        self._owns: dict[str, T] = {}

    def own(self, layer: Layer, extents: ExtentSet, keep: bool = True) -> T:
        """The layer's own set; the chain's layers are used twice, so they are kept."""
        if layer.path in self._owns:
            return self._owns[layer.path]
        converted = self.algebra.own(layer, extents)
        if keep and self._keep:
            self._owns[layer.path] = converted
        return converted

    def run(self, graph: ImageGraph, chain: Sequence[Layer], top: int, base: int) -> Exposure:
        algebra = self.algebra
        merged = chain[top:base]
        merged_paths = {layer.path for layer in merged}
        changed: T | None = None
        if all(layer.extents is not None for layer in merged):
            changed = algebra.union(
                self.own(layer, layer.extents) for layer in merged if layer.extents is not None
            )
        copy = None if changed is None else algebra.size_below(changed, 1 << 62)

        # remaining(N) = remaining(backing of N) - own(N): the changed bytes that no layer
        # between base and N hides. Top's subtree keeps reading top's view, so it is spared.
        # The stack holds each child with its parent's remaining set, so that siblings share
        # one set and at most one set per level of the tree is alive.
        top_path = chain[top].path
        exposed: dict[str, int | None] = {}
        pending: list[tuple[str, T | None]] = [
            (child, changed) for child in graph.children(chain[base].path)
        ]
        while pending:
            path, remaining = pending.pop()
            if path == top_path:
                continue
            layer = graph.layer(path)
            left: T | None = None
            if remaining is None or layer.extents is None:
                exposed[path] = None
            elif algebra.is_empty(remaining):
                left = remaining  # nothing left to expose, for it and everything above it
                exposed[path] = 0
            else:
                mine = self.own(layer, layer.extents, keep=path in merged_paths)
                if graph.is_active(path):
                    # An active layer: nothing reads through it, so its size is enough.
                    exposed[path] = algebra.minus_size(remaining, mine, layer.virtual_size)
                else:
                    left = algebra.minus(remaining, mine)
                    exposed[path] = algebra.size_below(left, layer.virtual_size)
            pending.extend((child, left) for child in graph.children(path))

        # Pull advice: what lies beneath each merged layer, accumulated from base upwards.
        pulls: list[int | None] = []
        under = chain[base].extents
        beneath = None if under is None else self.own(chain[base], under)
        for layer in reversed(merged):
            if beneath is None or layer.extents is None:
                pulls.append(None)
                beneath = None
                continue
            mine = self.own(layer, layer.extents)
            pulls.append(algebra.minus_size(beneath, mine, layer.virtual_size))
            beneath = algebra.union([beneath, mine])
        return Exposure(copy, exposed, tuple(reversed(pulls)))


def expose(graph: ImageGraph, chain: Sequence[Layer], top: int, base: int) -> Exposure:
    """Exposure of a commit of ``chain[top]`` into ``chain[base]``.

    Bitmaps of the coarsest unit that every boundary met so far is a multiple of (the cluster
    size, for qcow2) when that keeps them small; exact sorted ranges otherwise.
    """
    alignments: dict[str, int] = {}

    def alignment(layer: Layer) -> int:
        if layer.path not in alignments:
            extents = layer.extents if layer.extents is not None else ExtentSet.empty()
            alignments[layer.path] = extents.alignment_shift
        return alignments[layer.path]

    known = [layer.extents for layer in chain[top : base + 1] if layer.extents is not None]
    end = max((extents.end for extents in known), default=0)
    shift = min([_LARGEST_UNIT_SHIFT, *(alignment(layer) for layer in chain[top : base + 1])])
    ranges = sum(len(extents) for extents in known)
    if ranges <= FEW_RANGES:
        # A few ranges: sorted ranges in pure Python, with no bitmap (and no numpy) at all.
        return _Walk(RangeAlgebra()).run(graph, chain, top, base)
    affordable = min(MAX_BITMAP_UNITS, max(SMALL_BITMAP_UNITS, _UNITS_PER_RANGE * ranges))
    while True:
        units = (end + (1 << shift) - 1) >> shift
        if units > affordable:
            return _Walk(RangeAlgebra()).run(graph, chain, top, base)
        keep = (base - top + 1) * (units // 8) <= _KEEP_BYTES
        try:
            walk = _Walk(BitmapAlgebra(shift, units, alignment), keep)
            return walk.run(graph, chain, top, base)
        except Misaligned as finer:
            shift = finer.shift
