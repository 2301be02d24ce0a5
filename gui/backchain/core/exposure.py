"""Which bytes of each view a commit changes, exactly as QEMU reads them: one walk over the tree.

A read at offset x of a layer that does not allocate x goes to its backing file, but only below
the backing file's virtual size; beyond it, QEMU reads zeros, as if the shorter layer held them.
QEMU's commit copies, below top's size, every offset that some merged layer allocates or that
such an end-of-file hides (``bdrv_is_allocated_above``), and grows base to top's size.
"""

from __future__ import annotations

from collections.abc import Sequence

from backchain.core.algebra import Algebra, BitmapAlgebra, Misaligned, RangeAlgebra, T
from backchain.core.extents import PURE_LIMIT, ExtentSet
from backchain.core.graph import ImageGraph, Layer
from backchain.core.static_typing import Generic
from backchain.core.valueclass import field, valueclass

__all__ = ["SMALL_BITMAP_UNITS", "Exposure", "RangeAlgebra", "View", "expose"]

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
# Up to this many ranges in the layers a commit reads, sorted ranges are cheap whatever the
# representation, and list-held sets keep the plan in pure Python (no numpy import).
FEW_RANGES = PURE_LIMIT


@valueclass(frozen=True)
class View:
    """The changed bytes of one image's current view and of each internal snapshot's view."""

    bytes: int | None
    snapshots: tuple[tuple[str, int | None], ...] = ()


@valueclass(frozen=True)
class Exposure:
    """The byte counts plan() reports; None wherever some extents are unknown."""

    bytes_to_copy: int | None
    views: dict[str, View]
    """Every image whose chain passes through base, except top and its dependants: how many
    bytes (below its virtual size) read different data after the commit."""
    pull_bytes: tuple[int | None, ...]
    """Per merged layer, top first: bytes beneath it (down to base) that it does not hide."""
    changed_above: dict[str, View] = field(default_factory=dict)
    """Top's dependants (the overlays re-pointed to base, and theirs) whose view changes."""

    @property
    def exposed(self) -> dict[str, int | None]:
        """Just the current views' counts."""
        return {path: view.bytes for path, view in self.views.items()}


def _reached(
    algebra: Algebra[T], layers: Sequence[Layer], own: list[T], solid: bool = True
) -> tuple[T, T, T | None]:
    """What a read of ``layers[0]`` finds in these layers (top first), below ``layers[0]``'s size.

    Returns (data, ends, solid): offsets that some layer allocates and the read reaches;
    offsets where the read meets the end of a shorter layer (and so reads zeros from there);
    and the offsets that may read something other than zeros (allocated, and not as a zero
    cluster by the first layer that allocates them; unknown zero clusters count as data),
    or None when ``solid`` is False: it costs two operations per layer.
    """
    reach = layers[0].virtual_size
    data: list[T] = []
    ends: list[T] = []
    solids: list[T] = []
    covered: T | None = None
    for index, layer in enumerate(layers):
        if index and layer.virtual_size < reach:
            ends.append(algebra.convert(ExtentSet.span(layer.virtual_size, reach)))
            reach = layer.virtual_size
        mine = algebra.clip(own[index], reach)
        data.append(mine)
        if not solid:
            continue
        written = mine
        if layer.zeros is not None and len(layer.zeros):
            written = algebra.minus(mine, algebra.convert(layer.zeros))
        solids.append(written if covered is None else algebra.minus(written, covered))
        covered = mine if covered is None else algebra.union([covered, mine])
    return algebra.union(data), algebra.union(ends), algebra.union(solids) if solid else None


def _copies_only_data(layers: Sequence[Layer]) -> bool:
    """Whether a commit of these layers (top first) copies only data they write: no layer
    holds a known zero cluster, and none is shorter than a layer above it."""
    reach = layers[0].virtual_size if layers else 0
    for layer in layers:
        if layer.zeros is not None and len(layer.zeros):
            return False
        if layer.virtual_size < reach:
            return False
    return True


def _both(algebra: Algebra[T], a: T, b: T) -> T:
    """Bytes in both sets."""
    return algebra.minus(a, algebra.minus(a, b))


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

    def _owns_of(self, layers: Sequence[Layer]) -> list[T] | None:
        if any(layer.extents is None for layer in layers):
            return None
        return [self.own(layer, layer.extents) for layer in layers if layer.extents is not None]

    def run(self, graph: ImageGraph, chain: Sequence[Layer], top: int, base: int) -> Exposure:
        algebra = self.algebra
        merged, below = chain[top:base], chain[base:]
        merged_owns = self._owns_of(merged)
        changed: T | None = None
        copy: int | None = None
        if merged_owns is not None:
            # Without zero clusters or short layers, every copied byte is data a merged layer
            # writes, so solid equals copied and base's own content cannot matter: neither
            # solid nor the layers below base are then computed at all.
            only_data = _copies_only_data(merged)
            data, ends, solid = _reached(algebra, merged, merged_owns, not only_data)
            copied = algebra.union([data, ends])
            copy = algebra.size_below(copied, 1 << 62)
            changed = copied
            base_data = None if only_data else self._base_data(below)
            if base_data is not None and solid is not None:
                # A copied byte changes base unless it reads zeros both before and after
                # (a zero cluster or a short layer's end, over zeros in base).
                changed = algebra.union([solid, _both(algebra, copied, base_data)])
        top_path = chain[top].path
        start = [(child, changed) for child in graph.children(chain[base].path)]
        views = self.subtree(graph, start, {top_path}, {layer.path for layer in merged})
        above = self.above(graph, chain, top, base, below)
        top_view = views.pop(top_path, None)
        if top_view is not None and any(count != 0 for _, count in top_view.snapshots):
            above[top_path] = top_view
        return Exposure(copy, views, self.pulls(chain, top, base), above)

    def _base_data(self, below: Sequence[Layer]) -> T | None:
        """What may read as non-zero through base (None while some extents are unknown)."""
        below_owns = self._owns_of(below)
        return None if below_owns is None else _reached(self.algebra, below, below_owns)[2]

    def above(
        self, graph: ImageGraph, chain: Sequence[Layer], top: int, base: int, below: Sequence[Layer]
    ) -> dict[str, View]:
        """Overlays of top read base's data from top's end up to base's, where they read zeros."""
        top_size, base_size = chain[top].virtual_size, chain[base].virtual_size
        if base_size <= top_size:
            return {}
        region: T | None = None
        base_data = self._base_data(below)
        if base_data is not None:
            span = self.algebra.convert(ExtentSet.span(top_size, base_size))
            region = _both(self.algebra, span, base_data)
        start = [(o, region) for o in graph.children(chain[top].path)]
        views = self.subtree(graph, start, set(), set())
        return {path: view for path, view in views.items() if view.bytes != 0 or any(
                n for _, n in view.snapshots)}  # fmt: skip

    def subtree(
        self, graph: ImageGraph, start: list[tuple[str, T | None]], skip: set[str], kept: set[str]
    ) -> dict[str, View]:
        """remaining(N) = remaining(backing of N) below its size - own(N), from ``start`` up.

        The stack holds each child with its parent's remaining set, so that siblings share one
        set and at most one set per level of the tree is alive.
        """
        algebra = self.algebra
        views: dict[str, View] = {}
        pending = list(start)
        while pending:
            path, remaining = pending.pop()
            layer = graph.layer(path)
            if path in skip:
                # Top keeps its view, but its internal snapshots read the changed base too.
                views[path] = View(0, self.snapshots(layer, remaining))
                continue
            left: T | None = None
            count: int | None = None
            if remaining is not None and layer.extents is not None:
                if algebra.is_empty(remaining):
                    left, count = remaining, 0
                else:
                    mine = self.own(layer, layer.extents, keep=path in kept)
                    if graph.is_active(path):
                        count = algebra.minus_size(remaining, mine, layer.virtual_size)
                    else:
                        left = algebra.clip(algebra.minus(remaining, mine), layer.virtual_size)
                        count = algebra.size_below(left, layer.virtual_size)
            views[path] = View(count, self.snapshots(layer, remaining))
            pending.extend((child, left) for child in graph.children(path))
        return views

    def snapshots(self, layer: Layer, remaining: T | None) -> tuple[tuple[str, int | None], ...]:
        """Each internal snapshot reads its own allocation over the same backing chain."""
        found: list[tuple[str, int | None]] = []
        for snapshot in layer.snapshots:
            if remaining is None or snapshot.extents is None:
                found.append((snapshot.name, None))
                continue
            mine = self.algebra.convert(snapshot.extents)
            count = self.algebra.minus_size(remaining, mine, snapshot.virtual_size)
            found.append((snapshot.name, count))
        return tuple(found)

    def pulls(self, chain: Sequence[Layer], top: int, base: int) -> tuple[int | None, ...]:
        """Pull advice: what lies beneath each merged layer, accumulated from base upwards."""
        algebra = self.algebra
        pulls: list[int | None] = []
        under = chain[base].extents
        beneath = None if under is None else self.own(chain[base], under)
        for layer in reversed(chain[top:base]):
            if beneath is None or layer.extents is None:
                pulls.append(None)
                beneath = None
                continue
            mine = self.own(layer, layer.extents)
            pulls.append(algebra.minus_size(beneath, mine, layer.virtual_size))
            beneath = algebra.union([beneath, mine])
        return tuple(reversed(pulls))


def _shift_of(value: int) -> int:
    return (value & -value).bit_length() - 1 if value else _LARGEST_UNIT_SHIFT


def expose(graph: ImageGraph, chain: Sequence[Layer], top: int, base: int) -> Exposure:
    """Exposure of a commit of ``chain[top]`` into ``chain[base]``.

    Bitmaps of the coarsest unit that every boundary met so far is a multiple of (the cluster
    size, for qcow2) when that keeps them small; exact sorted ranges otherwise.
    """

    def coarsest(exact: bool) -> int:
        # The unit a set was built of (a cluster) needs no scan, but may be finer than
        # its boundaries are: the scan is made when that finer unit would cost the bitmaps.
        return min([_LARGEST_UNIT_SHIFT,
                    *(e.alignment_shift if exact else e.grain_shift for e in known),
                    *(_shift_of(layer.virtual_size) for layer in used)])  # fmt: skip

    used = chain[top:]
    known = [layer.extents for layer in used if layer.extents is not None]
    end = max([*(extents.end for extents in known), *(layer.virtual_size for layer in used)])
    shift = coarsest(False)
    scanned = False
    ranges = sum(len(extents) for extents in known)
    if ranges <= FEW_RANGES:
        # A few ranges: sorted ranges in pure Python, with no bitmap (and no numpy) at all.
        return _Walk(RangeAlgebra()).run(graph, chain, top, base)
    affordable = min(MAX_BITMAP_UNITS, max(SMALL_BITMAP_UNITS, _UNITS_PER_RANGE * ranges))
    while True:
        units = (end + (1 << shift) - 1) >> shift
        if units > affordable and not scanned and coarsest(True) > shift:
            shift, scanned = coarsest(True), True
            continue
        if units > affordable:
            return _Walk(RangeAlgebra()).run(graph, chain, top, base)
        keep = (base - top + 1) * (units // 8) <= _KEEP_BYTES
        try:
            walk = _Walk(BitmapAlgebra(shift, units), keep)
            return walk.run(graph, chain, top, base)
        except Misaligned as finer:
            shift = finer.shift
