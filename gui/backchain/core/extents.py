"""Sets of byte ranges (half-open extents) with union, intersection, complement and size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

Offsets = npt.NDArray[np.int64]


def _normalise(starts: Offsets, ends: Offsets) -> tuple[Offsets, Offsets]:
    """Sort, drop empty ranges and merge overlapping or touching ones."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # A new run begins where a range starts beyond everything seen before it.
    begins = np.empty(starts.size, dtype=bool)
    begins[0] = True
    begins[1:] = starts[1:] > reach[:-1]
    run_ids = np.cumsum(begins) - 1
    merged_starts = starts[begins]
    merged_ends = np.zeros(merged_starts.size, dtype=np.int64)
    np.maximum.at(merged_ends, run_ids, ends)
    return merged_starts, merged_ends


class ExtentSet:
    """An immutable, normalised set of half-open byte ranges ``[start, end)``."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, starts: Offsets, ends: Offsets, *, normalised: bool = False) -> None:
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

    def union(self, *others: ExtentSet) -> ExtentSet:
        """Bytes in any of the sets."""
        if not others:
            return self
        starts = np.concatenate([self._starts, *(o._starts for o in others)])
        ends = np.concatenate([self._ends, *(o._ends for o in others)])
        return ExtentSet(starts, ends)

    def complement(self, limit: int) -> ExtentSet:
        """Bytes in ``[0, limit)`` that are not in the set."""
        starts = np.concatenate([np.zeros(1, dtype=np.int64), self._ends])
        ends = np.concatenate([self._starts, np.array([limit], dtype=np.int64)])
        ends = np.minimum(ends, limit)
        return ExtentSet(starts, ends)

    def intersection(self, other: ExtentSet) -> ExtentSet:
        """Bytes in both sets."""
        if len(self) == 0 or len(other) == 0:
            return ExtentSet.empty()
        limit = int(max(self._ends[-1], other._ends[-1]))
        # A ∩ B = not (not A ∪ not B), within [0, limit).
        return self.complement(limit).union(other.complement(limit)).complement(limit)

    def difference(self, other: ExtentSet) -> ExtentSet:
        """Bytes in this set but not in ``other``."""
        if len(self) == 0 or len(other) == 0:
            return self
        limit = int(max(self._ends[-1], other._ends[-1]))
        return self.intersection(other.complement(limit))

    def clip(self, limit: int) -> ExtentSet:
        """The part of the set below ``limit``."""
        return self.intersection(ExtentSet.span(0, limit)) if len(self) else self


def union_all(sets: Iterable[ExtentSet]) -> ExtentSet:
    """Union of any number of sets, in one pass."""
    collected = list(sets)
    if not collected:
        return ExtentSet.empty()
    return collected[0].union(*collected[1:])
