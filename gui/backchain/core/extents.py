"""Sets of byte ranges (half-open extents) with union, intersection, complement and size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

Offsets = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]

# np.sort(kind="stable") is a timsort, which merges already sorted runs in about linear time;
# beyond a few runs the default (introsort or SIMD) sort of the whole array is faster.
_FEW_RUNS = 4
_NO_ALIGNMENT = 62


def _sorted(parts: Sequence[Offsets], runs: int | None) -> Offsets:
    joined = np.concatenate(parts) if len(parts) != 1 else parts[0]
    if runs is not None and runs <= _FEW_RUNS:
        return np.sort(joined, kind="stable")
    return np.sort(joined)


def _merge(starts: Offsets, ends: Offsets) -> tuple[Offsets, Offsets]:
    """Union of ranges given as separately sorted starts and ends (all ``start < end``).

    The i-th smallest start is below the i-th smallest end, so coverage drops to zero right
    after the i-th end exactly when the next start lies beyond it; touching ranges merge.
    """
    if starts.size == 0:
        return starts, ends
    gap = starts[1:] > ends[:-1]
    first = np.empty(starts.size, dtype=bool)
    first[0] = True
    first[1:] = gap
    last = np.empty(ends.size, dtype=bool)
    last[-1] = True
    last[:-1] = gap
    return starts[first], ends[last]


def _normalise(starts: Offsets, ends: Offsets) -> tuple[Offsets, Offsets]:
    """Sort, drop empty ranges and merge overlapping or touching ones."""
    keep = ends > starts
    return _merge(np.sort(starts[keep]), np.sort(ends[keep]))


class ExtentSet:
    """An immutable, normalised set of half-open byte ranges ``[start, end)``.

    Normalised means sorted, non-empty, disjoint and not touching, so the set operations below
    are sweeps over already sorted boundaries rather than fresh sorts of arbitrary ranges.
    """

    __slots__ = ("_bitmaps", "_ends", "_shift", "_starts")

    def __init__(self, starts: Offsets, ends: Offsets, *, normalised: bool = False) -> None:
        # Derived forms are cached: the window re-plans the same graph on every click.
        self._bitmaps: dict[tuple[int, int], Bitmap] = {}
        self._shift: int | None = None
        if not normalised:
            starts, ends = _normalise(
                np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
            )
        starts.setflags(write=False)
        ends.setflags(write=False)
        self._starts = starts
        self._ends = ends

    @classmethod
    def empty(cls) -> ExtentSet:
        """The set that contains no byte."""
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none.copy(), normalised=True)

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> ExtentSet:
        """Build from ``(start, length)`` pairs, in any order, overlapping or not."""
        pairs = np.array(list(ranges), dtype=np.int64).reshape(-1, 2)
        return cls(pairs[:, 0].copy(), pairs[:, 0] + pairs[:, 1])

    @classmethod
    def span(cls, start: int, end: int) -> ExtentSet:
        """The single range ``[start, end)``."""
        return cls(np.array([start], dtype=np.int64), np.array([end], dtype=np.int64))

    @property
    def starts(self) -> Offsets:
        """Start offsets, ascending (read-only array)."""
        return self._starts

    @property
    def ends(self) -> Offsets:
        """End offsets (exclusive), ascending (read-only array)."""
        return self._ends

    def __len__(self) -> int:
        return int(self._starts.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Yield ``(start, end)`` pairs."""
        for start, end in zip(self._starts.tolist(), self._ends.tolist(), strict=True):
            yield int(start), int(end)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtentSet):
            return NotImplemented
        return bool(
            np.array_equal(self._starts, other._starts) and np.array_equal(self._ends, other._ends)
        )

    def __hash__(self) -> int:
        return hash((self._starts.tobytes(), self._ends.tobytes()))

    def __repr__(self) -> str:
        shown = ", ".join(f"[{s}, {e})" for s, e in list(self)[:4])
        more = "" if len(self) <= 4 else f", ... ({len(self)} ranges)"
        return f"ExtentSet({shown}{more})"

    @property
    def size(self) -> int:
        """How many bytes the set covers."""
        return int(np.sum(self._ends - self._starts))

    @property
    def end(self) -> int:
        """The end of the last range (0 for the empty set)."""
        return int(self._ends[-1]) if self._ends.size else 0

    def union(self, *others: ExtentSet) -> ExtentSet:
        """Bytes in any of the sets."""
        return union_all([self, *others])

    def complement(self, limit: int) -> ExtentSet:
        """Bytes in ``[0, limit)`` that are not in the set."""
        starts = np.concatenate([np.zeros(1, dtype=np.int64), self._ends])
        ends = np.minimum(np.concatenate([self._starts, np.array([limit], dtype=np.int64)]), limit)
        # The gaps of a normalised set are themselves sorted, disjoint and not touching.
        keep = ends > starts
        return ExtentSet(starts[keep], ends[keep], normalised=True)

    def _overlaps(self, other: ExtentSet) -> tuple[Offsets, Offsets]:
        """Candidate pieces of the intersection: ``[S[k+1], E[k])`` where non-empty.

        Each set is disjoint, so at most two ranges cover a byte: a byte is in both sets
        exactly when more than k+1 starts and at most k ends lie at or below it.
        """
        starts = _sorted([self._starts, other._starts], 2)
        ends = _sorted([self._ends, other._ends], 2)
        return starts[1:], ends[:-1]

    def intersection(self, other: ExtentSet) -> ExtentSet:
        """Bytes in both sets."""
        if len(self) == 0 or len(other) == 0:
            return ExtentSet.empty()
        starts, ends = self._overlaps(other)
        keep = starts < ends
        return ExtentSet(starts[keep], ends[keep], normalised=True)

    def intersection_size(self, other: ExtentSet) -> int:
        """``len`` in bytes of the intersection, without building it."""
        if len(self) == 0 or len(other) == 0:
            return 0
        starts, ends = self._overlaps(other)
        lengths = ends - starts
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
        count = int(np.searchsorted(self._starts, limit, side="left"))
        ends = self._ends[:count].copy()
        if count:
            ends[-1] = min(int(ends[-1]), limit)
        return ExtentSet(self._starts[:count].copy(), ends, normalised=True)

    def size_below(self, limit: int) -> int:
        """Bytes of the set below ``limit``."""
        return self.clip(limit).size

    @property
    def alignment_shift(self) -> int:
        """The largest ``s`` such that every boundary is a multiple of ``2**s`` (capped)."""
        if self._shift is None:
            self._shift = self._compute_alignment_shift()
        return self._shift

    def _compute_alignment_shift(self) -> int:
        if len(self) == 0:
            return _NO_ALIGNMENT
        bits = int(np.bitwise_or.reduce(self._starts) | np.bitwise_or.reduce(self._ends))
        if bits == 0:
            return _NO_ALIGNMENT
        return min((bits & -bits).bit_length() - 1, _NO_ALIGNMENT)

    def as_bitmap(self, shift: int, units: int) -> Bitmap:
        """This set as a read-only Bitmap of ``2**shift``-byte units (computed once)."""
        key = (shift, units)
        cached = self._bitmaps.get(key)
        if cached is None:
            cached = Bitmap.from_extents(self, shift, units)
            cached.words.setflags(write=False)
            self._bitmaps[key] = cached
        return cached


def union_all(sets: Iterable[ExtentSet]) -> ExtentSet:
    """Union of any number of sets: one sort of all starts and one of all ends."""
    present = [s for s in sets if len(s)]
    if not present:
        return ExtentSet.empty()
    if len(present) == 1:
        return present[0]
    starts = _sorted([s.starts for s in present], len(present))
    ends = _sorted([s.ends for s in present], len(present))
    merged_starts, merged_ends = _merge(starts, ends)
    return ExtentSet(merged_starts, merged_ends, normalised=True)


class Bitmap:
    """A set of aligned units of ``2**shift`` bytes in ``[0, units)``, as packed bits.

    When every boundary is a multiple of one unit (qcow2 clusters), union and difference are
    word-wise AND/OR over ``units / 64`` words, whatever the number of ranges.
    """

    __slots__ = ("shift", "units", "words")

    def __init__(self, words: Words, shift: int, units: int) -> None:
        self.words = words
        self.shift = shift
        self.units = units

    @classmethod
    def empty(cls, shift: int, units: int) -> Bitmap:
        """No unit set."""
        return cls(np.zeros((units + 63) // 64, dtype=np.uint64), shift, units)

    @classmethod
    def from_extents(
        cls, extents: ExtentSet, shift: int, units: int, *, aligned: bool = False
    ) -> Bitmap:
        """The units of ``extents`` below ``units``; its boundaries must be unit-aligned.

        ``aligned=True`` skips the check, for callers that already know the alignment.
        """
        if not aligned and extents.alignment_shift < shift:
            raise ValueError(f"{extents!r} is not aligned to units of {1 << shift} bytes")
        unit_starts = extents.starts >> shift
        unit_ends = extents.ends >> shift
        if extents.end >> shift > units:
            count = int(np.searchsorted(unit_starts, units, side="left"))
            unit_starts = unit_starts[:count]
            unit_ends = np.minimum(unit_ends[:count], units)
        size = (units + 63) // 64 * 64
        # Toggle a bit at every boundary (all distinct, since ranges do not touch), then a
        # prefix XOR turns toggles into coverage: within words by doubling shifts, across
        # words by the running parity of the words before.
        toggles = np.zeros(size + 1, dtype=np.uint8)
        toggles[unit_starts] = 1
        toggles[unit_ends] = 1
        words = np.packbits(toggles[:size], bitorder="little").view("<u8").astype(np.uint64)
        for step in (1, 2, 4, 8, 16, 32):
            words ^= words << np.uint64(step)
        parity = (words >> np.uint64(63)).astype(bool)
        carry = np.zeros(words.size, dtype=bool)
        carry[1:] = np.logical_xor.accumulate(parity)[:-1]
        np.invert(words, out=words, where=carry)
        return cls(words, shift, units)

    def __or__(self, other: Bitmap) -> Bitmap:
        return Bitmap(self.words | other.words, self.shift, self.units)

    def minus(self, other: Bitmap) -> Bitmap:
        """Units set here and not in ``other``."""
        return Bitmap(self.words & ~other.words, self.shift, self.units)

    def any(self) -> bool:
        """Whether any unit is set."""
        return bool(self.words.any())

    @property
    def size(self) -> int:
        """Bytes covered."""
        return int(np.bitwise_count(self.words).sum(dtype=np.int64)) << self.shift

    def size_below(self, limit: int) -> int:
        """Bytes covered below ``limit`` (which need not be aligned)."""
        unit, rest = limit >> self.shift, limit & ((1 << self.shift) - 1)
        if limit <= 0:
            return 0
        if unit >= self.units:
            return self.size
        word, bit = divmod(unit, 64)
        full = int(np.bitwise_count(self.words[:word]).sum(dtype=np.int64))
        partial = int(self.words[word]) & ((1 << bit) - 1)
        total = (full + partial.bit_count()) << self.shift
        if rest and (int(self.words[word]) >> bit) & 1:
            total += rest
        return total

    def to_extents(self) -> ExtentSet:
        """The same bytes as an ExtentSet."""
        bits = np.unpackbits(self.words.astype("<u8").view(np.uint8), bitorder="little")
        edges = np.diff(bits.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1).astype(np.int64) << self.shift
        ends = np.flatnonzero(edges == -1).astype(np.int64) << self.shift
        return ExtentSet(starts, ends, normalised=True)
