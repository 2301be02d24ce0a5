"""Sets of byte ranges (half-open extents) with union, intersection, complement and size.

Small sets are plain lists of ints and their arithmetic is pure Python, so that a command on a
few images never imports numpy; large sets (or any set already held as arrays) use numpy.
Either way a set is normalised, so both give the same ranges, int for int.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Iterator

from backchain.core.ranges import (
    Lists,
    intersect_lists,
    merge,
    normalise,
    normalise_pairs,
    sorted_runs,
)
from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")
    import numpy as np
    import numpy.typing as npt

    Offsets = npt.NDArray[np.int64]


_NO_ALIGNMENT = 62
PURE_LIMIT = 4096
"""Up to this many ranges in all, an operation on list-held sets stays in pure Python: below it,
numpy's import (tens of milliseconds) costs more than the arithmetic it would speed up."""


class ExtentSet:
    """An immutable, normalised set of half-open byte ranges ``[start, end)``.

    Normalised means sorted, non-empty, disjoint and not touching, so the set operations below
    are sweeps over already sorted boundaries rather than fresh sorts of arbitrary ranges.
    """

    __slots__ = ("_arrays", "_derived", "_grain", "_lists", "_packed", "_shift", "_size", "_units")

    def __init__(self, starts: Any, ends: Any, *, normalised: bool = False) -> None:
        # Derived forms are cached: the window re-plans the same graph on every click.
        self._derived: dict[Hashable, Any] = {}
        self._shift: int | None = None
        # A unit every boundary is a multiple of by construction (of_units), else None.
        self._grain: int | None = None
        self._size: int | None = None
        self._lists: Lists | None = None
        self._arrays: tuple[Offsets, Offsets] | None = None
        # Ranges counted in units of 2**_grain bytes (of_units), until byte offsets are needed.
        self._units: tuple[Offsets, Offsets] | None = None
        # The same units as packed bit words, when the reader had them anyway (of_units).
        self._packed: Any = None
        if isinstance(starts, list) and isinstance(ends, list) and len(starts) <= PURE_LIMIT:
            self._lists = (
                (starts, ends) if normalised else normalise_pairs(zip(starts, ends, strict=True))
            )
            return
        import numpy as np

        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        if not normalised:
            starts, ends = normalise(starts, ends)
        starts.setflags(write=False)
        ends.setflags(write=False)
        self._arrays = (starts, ends)

    @classmethod
    def empty(cls) -> ExtentSet:
        """The set that contains no byte."""
        return cls([], [], normalised=True)

    @classmethod
    def of_units(
        cls, starts: Any, ends: Any, shift: int, *, normalised: bool = False, packed: Any = None
    ) -> ExtentSet:
        """Ranges ``[starts, ends)`` counted in units of ``2**shift`` bytes.

        The boundaries are multiplied here, so every one is a multiple of the unit by
        construction: the exposure's bitmaps then need no scan of the set to know it.
        ``packed`` is the same set as read-only uint64 words (bit i of word j is unit 64j + i),
        from a reader that holds one flag per unit anyway: a bitmap of that unit is then
        taken from it instead of being built.
        """
        if isinstance(starts, list) and isinstance(ends, list):
            made = cls(
                [s << shift for s in starts], [e << shift for e in ends], normalised=normalised
            )
        else:
            # Kept in units: the bitmaps of that unit need no division, and the byte offsets
            # are made only if some other operation asks for them.
            made = cls(starts, ends, normalised=normalised)
            made._units, made._arrays = made._arrays, None
        # Normalising only drops boundaries, so those left are multiples of the unit still.
        made._grain, made._packed = shift, packed
        return made

    def alias(self) -> ExtentSet:
        """A new set over the same read-only ranges, with nothing derived yet but the unit it
        was built of (a layer that shares another's ranges computes its own bitmaps)."""
        twin = ExtentSet.empty()
        twin._lists, twin._arrays, twin._grain = self._lists, self._arrays, self._grain
        twin._units, twin._packed = self._units, self._packed
        return twin

    def packed_words(self, shift: int) -> Any:
        """The set as packed words of ``2**shift``-byte units, if it was built with them."""
        return self._packed if self._grain == shift else None

    def unit_bounds(self, shift: int, which: int) -> Offsets:
        """Starts (``which`` 0) or ends (1) in units of ``2**shift`` bytes, which must divide
        every boundary; no division when the set is held in those units."""
        # Read once: another thread may turn the units into byte offsets meanwhile.
        units, grain = self._units, self._grain
        if units is not None and grain is not None and grain >= shift:
            held = units[which]
            return held if grain == shift else held << (grain - shift)
        return self.arrays[which] >> shift

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> ExtentSet:
        """Build from ``(start, length)`` pairs, in any order, overlapping or not."""
        pairs = [(int(start), int(start) + int(length)) for start, length in ranges]
        return cls([s for s, _ in pairs], [e for _, e in pairs])

    @classmethod
    def span(cls, start: int, end: int) -> ExtentSet:
        """The single range ``[start, end)``."""
        return cls([start], [end])

    def _as_lists(self) -> Lists:
        if self._lists is None:
            starts, ends = self.arrays
            self._lists = (starts.tolist(), ends.tolist())
        return self._lists

    @property
    def arrays(self) -> tuple[Offsets, Offsets]:
        """Starts and ends as read-only int64 arrays (imports numpy)."""
        units, grain = self._units, self._grain
        if self._arrays is None and units is not None and grain is not None:
            starts, ends = (bounds << grain for bounds in units)
            starts.setflags(write=False)
            ends.setflags(write=False)
            # Held in bytes from now on: one copy of the ranges, not two.
            self._arrays, self._units = (starts, ends), None
        if self._arrays is None:
            import numpy as np

            lists = self._as_lists()
            starts = np.array(lists[0], dtype=np.int64)
            ends = np.array(lists[1], dtype=np.int64)
            starts.setflags(write=False)
            ends.setflags(write=False)
            self._arrays = (starts, ends)
        return self._arrays

    @property
    def starts(self) -> Offsets:
        """Start offsets, ascending (read-only array)."""
        return self.arrays[0]

    @property
    def ends(self) -> Offsets:
        """End offsets (exclusive), ascending (read-only array)."""
        return self.arrays[1]

    def __len__(self) -> int:
        if self._lists is not None:
            return len(self._lists[0])
        units = self._units
        if units is not None:
            return int(units[0].size)
        return int(self.arrays[0].size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Yield ``(start, end)`` pairs."""
        starts, ends = self._as_lists()
        return iter(list(zip(starts, ends, strict=True)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtentSet):
            return NotImplemented
        if len(self) != len(other):
            return False
        if self._lists is not None and other._lists is not None:
            return self._lists == other._lists
        import numpy as np

        return bool(
            np.array_equal(self.starts, other.starts) and np.array_equal(self.ends, other.ends)
        )

    def __hash__(self) -> int:
        starts, ends = self._as_lists()
        return hash((tuple(starts), tuple(ends)))

    def __repr__(self) -> str:
        shown = ", ".join(f"[{s}, {e})" for s, e in list(self)[:4])
        more = "" if len(self) <= 4 else f", ... ({len(self)} ranges)"
        return f"ExtentSet({shown}{more})"

    @property
    def size(self) -> int:
        """How many bytes the set covers (kept: plan() asks it of each layer more than once)."""
        if self._size is None:
            if self._lists is not None:
                self._size = sum(self._lists[1]) - sum(self._lists[0])
            else:
                units, grain = self._units, self._grain
                starts, ends = units if units is not None else self.arrays
                # Two sums instead of a sum of differences, which would first build a third
                # array; each may wrap in int64, but their difference modulo 2**64 is exact.
                size = (int(ends.sum()) - int(starts.sum())) % (1 << 64)
                if units is not None and grain is not None:
                    size <<= grain
                self._size = size
        return self._size

    @property
    def end(self) -> int:
        """The end of the last range (0 for the empty set)."""
        if self._lists is not None:
            return self._lists[1][-1] if self._lists[1] else 0
        units, grain = self._units, self._grain
        if units is not None and grain is not None:
            held = units[1]
            return int(held[-1]) << grain if held.size else 0
        ends = self.arrays[1]
        return int(ends[-1]) if ends.size else 0

    def union(self, *others: ExtentSet) -> ExtentSet:
        """Bytes in any of the sets."""
        return union_all([self, *others])

    def complement(self, limit: int) -> ExtentSet:
        """Bytes in ``[0, limit)`` that are not in the set."""
        # The gaps of a normalised set are themselves sorted, disjoint and not touching.
        if _all_pure(self):
            own_starts, own_ends = self._as_lists()
            gap_starts = [0, *own_ends]
            gap_ends = [min(s, limit) for s in own_starts] + [limit]
            kept = [(s, e) for s, e in zip(gap_starts, gap_ends, strict=True) if e > s]
            return ExtentSet([s for s, _ in kept], [e for _, e in kept], normalised=True)
        import numpy as np

        own = self.arrays
        starts = np.concatenate([np.zeros(1, dtype=np.int64), own[1]])
        ends = np.minimum(np.concatenate([own[0], np.array([limit], dtype=np.int64)]), limit)
        keep = ends > starts
        return ExtentSet(starts[keep], ends[keep], normalised=True)

    def _overlaps(self, other: ExtentSet) -> tuple[Offsets, Offsets]:
        """Candidate pieces of the intersection: ``[S[k+1], E[k])`` where non-empty.

        Each set is disjoint, so at most two ranges cover a byte: a byte is in both sets
        exactly when more than k+1 starts and at most k ends lie at or below it.
        """
        starts = sorted_runs([self.starts, other.starts], 2)
        ends = sorted_runs([self.ends, other.ends], 2)
        return starts[1:], ends[:-1]

    def intersection(self, other: ExtentSet) -> ExtentSet:
        """Bytes in both sets."""
        if len(self) == 0 or len(other) == 0:
            return ExtentSet.empty()
        if _all_pure(self, other):
            starts, ends = intersect_lists(self._as_lists(), other._as_lists())
            return ExtentSet(starts, ends, normalised=True)
        starts_a, ends_a = self._overlaps(other)
        keep = starts_a < ends_a
        return ExtentSet(starts_a[keep], ends_a[keep], normalised=True)

    def intersection_size(self, other: ExtentSet) -> int:
        """``len`` in bytes of the intersection, without building it."""
        if len(self) == 0 or len(other) == 0:
            return 0
        if _all_pure(self, other):
            starts, ends = intersect_lists(self._as_lists(), other._as_lists())
            return sum(ends) - sum(starts)
        starts_a, ends_a = self._overlaps(other)
        lengths = ends_a - starts_a
        return int(lengths[lengths > 0].sum())

    def difference(self, other: ExtentSet) -> ExtentSet:
        """Bytes in this set but not in ``other``."""
        if len(self) == 0 or len(other) == 0:
            return self
        return self.intersection(other.complement(self.end))

    def difference_size(self, other: ExtentSet) -> int:
        """Bytes in this set but not in ``other``, without building the difference."""
        return self.size - self.intersection_size(other)

    def clip(self, limit: int) -> ExtentSet:
        """The part of the set below ``limit``."""
        if len(self) == 0 or self.end <= limit:
            return self
        if self._lists is not None:
            starts, ends = self._lists
            count = bisect.bisect_left(starts, limit)
            clipped = ends[:count]
            if count:
                clipped[-1] = min(clipped[-1], limit)
            return ExtentSet(starts[:count], clipped, normalised=True)
        import numpy as np

        array_starts, array_ends = self.arrays
        found = int(np.searchsorted(array_starts, limit, side="left"))
        kept = array_ends[:found].copy()
        if found:
            kept[-1] = min(int(kept[-1]), limit)
        return ExtentSet(array_starts[:found].copy(), kept, normalised=True)

    def size_below(self, limit: int) -> int:
        """Bytes of the set below ``limit``."""
        return self.clip(limit).size

    @property
    def alignment_shift(self) -> int:
        """The largest ``s`` such that every boundary is a multiple of ``2**s`` (capped)."""
        if self._shift is None:
            self._shift = self._compute_alignment_shift()
        return self._shift

    @property
    def grain_shift(self) -> int:
        """Some ``s`` such that every boundary is a multiple of ``2**s``: the unit the set was
        built of when known (no scan; it may be finer than alignment_shift), else that."""
        if self._grain is not None and len(self):
            return self._grain
        return self.alignment_shift

    def aligned_to(self, shift: int) -> bool:
        """Whether every boundary is a multiple of ``2**shift`` (scans only when the unit the
        set was built of does not already say so)."""
        return (self._grain is not None and self._grain >= shift) or self.alignment_shift >= shift

    def _compute_alignment_shift(self) -> int:
        if len(self) == 0:
            return _NO_ALIGNMENT
        if self._lists is not None:
            bits = 0
            for boundary in (*self._lists[0], *self._lists[1]):
                bits |= boundary
        else:
            import numpy as np

            units, grain = self._units, self._grain
            starts, ends = units if units is not None else self.arrays
            bits = int(np.bitwise_or.reduce(starts) | np.bitwise_or.reduce(ends))
            if units is not None and grain is not None:
                bits <<= grain
        if bits == 0:
            return _NO_ALIGNMENT
        return min((bits & -bits).bit_length() - 1, _NO_ALIGNMENT)

    def derived(self, key: Hashable, make: Callable[[ExtentSet], T]) -> T:
        """``make(self)``, computed once per ``key`` (core.bitmap keeps its bitmaps here)."""
        if key not in self._derived:
            self._derived[key] = make(self)
        found: T = self._derived[key]
        return found


def _all_pure(*sets: ExtentSet) -> bool:
    """Whether every set is held as lists and, together, they are small enough for Python."""
    total = 0
    for extents in sets:
        lists = extents._lists
        if lists is None:
            return False
        total += len(lists[0])
    return total <= PURE_LIMIT


def union_all(sets: Iterable[ExtentSet]) -> ExtentSet:
    """Union of any number of sets: one sort of all starts and one of all ends."""
    present = [s for s in sets if len(s)]
    if not present:
        return ExtentSet.empty()
    if len(present) == 1:
        return present[0]
    if _all_pure(*present):
        pairs = [pair for extents in present for pair in extents]
        return ExtentSet(*normalise_pairs(pairs), normalised=True)
    starts = sorted_runs([s.starts for s in present], len(present))
    ends = sorted_runs([s.ends for s in present], len(present))
    merged_starts, merged_ends = merge(starts, ends)
    return ExtentSet(merged_starts, merged_ends, normalised=True)
