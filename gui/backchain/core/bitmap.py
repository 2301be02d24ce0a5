"""Packed bitmaps of aligned units: word-wise union and difference for the exposure walk."""

from __future__ import annotations

from collections.abc import Iterable

from backchain.core.extents import ExtentSet
from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    Words = npt.NDArray[np.uint64]
    Units = npt.NDArray[np.signedinteger[Any]]
    Flags = npt.NDArray[np.bool_]


# Up to this many units per range on average, marking every covered unit costs less than
# toggling the boundaries and then sweeping the prefix parity over every word.
_UNITS_PER_RANGE = 4


def words_by_units(starts: Units, ends: Units, covered: int, units: int) -> Words:
    """The packed words of ranges ``[starts, ends)`` of units below ``units``, by marking each
    of the ``covered`` units; one scatter when every range is a single unit."""
    import numpy as np

    marks = np.zeros((units + 63) // 64 * 64, dtype=bool)
    if covered == starts.size:
        marks[starts] = True
    elif covered:
        lengths = ends - starts
        # Unit i of the j-th range is starts[j] + i: the run starts repeated, plus a ramp that
        # restarts at zero at each range.
        offsets = np.cumsum(lengths) - lengths
        index = np.repeat(starts - offsets, lengths)
        index += np.arange(covered, dtype=np.int64)
        marks[index] = True
    words: Words = np.packbits(marks, bitorder="little").view("<u8").astype(np.uint64, copy=False)
    return words


def words_by_toggles(starts: Units, ends: Units, units: int) -> Words:
    """The same words, in time proportional to the ranges and the words, whatever the lengths."""
    import numpy as np

    size = (units + 63) // 64 * 64
    # Toggle a bit at every boundary (all distinct, since ranges do not touch), then a
    # prefix XOR turns toggles into coverage: within words by doubling shifts, across
    # words by the running parity of the words before.
    toggles = np.zeros(size + 1, dtype=np.uint8)
    toggles[starts] = 1
    toggles[ends] = 1
    words: Words = (
        np.packbits(toggles[:size], bitorder="little").view("<u8").astype(np.uint64, copy=False)
    )
    scratch = np.empty_like(words)
    for step in (1, 2, 4, 8, 16, 32):
        np.left_shift(words, np.uint64(step), out=scratch)
        np.bitwise_xor(words, scratch, out=words)
    # The running parity is the low bit of a running count; uint8 wraps, keeping that bit.
    parity = (words >> np.uint64(63)).astype(np.uint8)
    carry = np.zeros(words.size, dtype=bool)
    np.bitwise_and(np.cumsum(parity[:-1], dtype=np.uint8), 1, out=carry[1:], casting="unsafe")
    np.invert(words, out=words, where=carry)
    return words


def pack_blocks(flags: Flags, blocks: Units, per_block: int) -> Words:
    """Packed words of per-unit flags read block by block (``blocks`` ascending, each of
    ``per_block`` units, a multiple of 64): unit ``b * per_block + i`` is ``flags[k *
    per_block + i]`` for the k-th block ``b``; units of blocks not read are clear."""
    import numpy as np

    words_per_block = per_block // 64
    count = int(blocks[-1]) + 1 if blocks.size else 0
    words = np.zeros((count, words_per_block), dtype=np.uint64)
    packed = np.packbits(flags.reshape(-1, per_block), axis=1, bitorder="little")
    words[blocks] = packed.view("<u8").astype(np.uint64, copy=False)
    result: Words = words.reshape(-1)
    result.setflags(write=False)
    return result


def fit_words(packed: Words, units: int) -> Words:
    """``packed`` cut or padded to the words of ``units`` units, with no unit at or above it."""
    import numpy as np

    count = (units + 63) // 64
    if packed.size < count:
        words = np.zeros(count, dtype=np.uint64)
        words[: packed.size] = packed
        return words
    words = packed[:count]
    tail = units % 64
    if tail and int(words[-1]) >> tail:
        words = words.copy()
        words[-1] &= np.uint64((1 << tail) - 1)
    return words


def bitmap_of(extents: ExtentSet, shift: int, units: int) -> Bitmap:
    """``extents`` as a read-only Bitmap, built once per set and kept on it for re-plans."""

    def make(source: ExtentSet) -> Bitmap:
        bitmap = Bitmap.from_extents(source, shift, units)
        bitmap.words.setflags(write=False)
        return bitmap

    return extents.derived(("bitmap", shift, units), make)


class Bitmap:
    """A set of aligned units of ``2**shift`` bytes in ``[0, units)``, as packed bits.

    When every boundary is a multiple of one unit (qcow2 clusters), union and difference are
    word-wise AND/OR over ``units / 64`` words, whatever the number of ranges.
    """

    __slots__ = ("_any", "shift", "units", "words")

    def __init__(self, words: Words, shift: int, units: int) -> None:
        self.words = words
        self.shift = shift
        self.units = units
        # Siblings share their parent's bitmap in the exposure walk, and each asks whether it
        # is empty: scan the words once.
        self._any: bool | None = None

    @classmethod
    def empty(cls, shift: int, units: int) -> Bitmap:
        """No unit set."""
        import numpy as np

        return cls(np.zeros((units + 63) // 64, dtype=np.uint64), shift, units)

    @classmethod
    def from_extents(
        cls, extents: ExtentSet, shift: int, units: int, *, aligned: bool = False
    ) -> Bitmap:
        """The units of ``extents`` below ``units``; its boundaries must be unit-aligned.

        ``aligned=True`` skips the check, for callers that already know the alignment.
        """
        import numpy as np

        if not aligned and not extents.aligned_to(shift):
            raise ValueError(f"{extents!r} is not aligned to units of {1 << shift} bytes")
        packed = extents.packed_words(shift)
        if packed is not None:
            # The reader's own flags, packed once: no scatter of every unit.
            return cls(fit_words(packed, units), shift, units)
        unit_starts = extents.unit_bounds(shift, 0)
        covered = extents.size >> shift
        if extents.end >> shift > units:
            count = int(np.searchsorted(unit_starts, units, side="left"))
            unit_starts = unit_starts[:count]
            unit_ends = np.minimum(extents.unit_bounds(shift, 1)[:count], units)
            covered = int(np.sum(unit_ends - unit_starts))
        elif covered == unit_starts.size:
            # Single units: the ends are the starts plus one, and need not be computed.
            return cls(words_by_units(unit_starts, unit_starts, covered, units), shift, units)
        else:
            unit_ends = extents.unit_bounds(shift, 1)
        if covered <= _UNITS_PER_RANGE * unit_starts.size:
            words = words_by_units(unit_starts, unit_ends, covered, units)
        else:
            words = words_by_toggles(unit_starts, unit_ends, units)
        return cls(words, shift, units)

    def __or__(self, other: Bitmap) -> Bitmap:
        return Bitmap(self.words | other.words, self.shift, self.units)

    def minus(self, other: Bitmap) -> Bitmap:
        """Units set here and not in ``other``."""
        import numpy as np

        # One new array, not two (``~other`` and the AND): the walk subtracts hundreds of times.
        words = np.invert(other.words)
        np.bitwise_and(self.words, words, out=words)
        return Bitmap(words, self.shift, self.units)

    def minus_size_below(self, other: Bitmap, limit: int, scratch: Words) -> int:
        """Bytes below ``limit`` set here and not in ``other``, computed in ``scratch``."""
        import numpy as np

        np.invert(other.words, out=scratch)
        np.bitwise_and(self.words, scratch, out=scratch)
        return Bitmap(scratch, self.shift, self.units).size_below(limit)

    def any(self) -> bool:
        """Whether any unit is set."""
        if self._any is None:
            self._any = bool(self.words.any())
        return self._any

    @classmethod
    def union_of(cls, items: Iterable[Bitmap], shift: int, units: int) -> Bitmap:
        """Word-wise OR of any number of bitmaps, accumulated in place in one new array."""
        import numpy as np

        words: Words | None = None
        first: Bitmap | None = None
        for item in items:
            if first is None:
                # Bitmaps are never written once built: a union of one is that one.
                first = item
            elif words is None:
                words = np.bitwise_or(first.words, item.words)
            else:
                np.bitwise_or(words, item.words, out=words)
        if words is not None:
            return cls(words, shift, units)
        return first if first is not None else cls.empty(shift, units)

    @property
    def size(self) -> int:
        """Bytes covered."""
        import numpy as np

        return int(np.bitwise_count(self.words).sum(dtype=np.int64)) << self.shift

    def size_below(self, limit: int) -> int:
        """Bytes covered below ``limit`` (which need not be aligned)."""
        import numpy as np

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
        import numpy as np

        bits = np.unpackbits(self.words.astype("<u8").view(np.uint8), bitorder="little")
        edges = np.diff(bits.view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(edges == 1).astype(np.int64) << self.shift
        ends = np.flatnonzero(edges == -1).astype(np.int64) << self.shift
        return ExtentSet(starts, ends, normalised=True)
