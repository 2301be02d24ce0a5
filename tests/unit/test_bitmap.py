"""Bitmaps built by marking units equal those built by toggling boundaries, and the bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backchain.core.bitmap import Bitmap, words_by_toggles, words_by_units
from backchain.core.extents import ExtentSet


@st.composite
def unit_ranges(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int]:
    """Normalised ranges of units (single units, short and long runs), and a unit count."""
    units = draw(st.integers(1, 700))
    cuts = sorted(draw(st.sets(st.integers(0, units), max_size=40)))
    # Pair up distinct cuts: [c0, c1), [c2, c3), ... are sorted, non-empty and never touch.
    ranges = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    singles = draw(st.booleans())
    if singles:
        ranges = [(s, s + 1) for s, _ in ranges]
    return ranges, units


def reference_words(ranges: list[tuple[int, int]], units: int) -> list[int]:
    bits = [0] * ((units + 63) // 64 * 64)
    for start, end in ranges:
        for unit in range(start, min(end, units)):
            bits[unit] = 1
    words = range(0, len(bits), 64)
    return [sum(bit << i for i, bit in enumerate(bits[w : w + 64])) for w in words]


@settings(max_examples=400, deadline=None)
@given(unit_ranges())
def test_marking_units_and_toggling_boundaries_build_the_same_words(
    case: tuple[list[tuple[int, int]], int],
) -> None:
    ranges, units = case
    starts = np.array([s for s, _ in ranges], dtype=np.int64)
    ends = np.array([e for _, e in ranges], dtype=np.int64)
    covered = int(np.sum(ends - starts))
    expected = reference_words(ranges, units)
    assert words_by_toggles(starts, ends, units).tolist() == expected
    assert words_by_units(starts, ends, covered, units).tolist() == expected
    if covered == len(ranges):
        # The single-unit path reads the starts only.
        assert words_by_units(starts, starts, covered, units).tolist() == expected


@settings(max_examples=300, deadline=None)
@given(unit_ranges(), st.sampled_from([0, 4, 16]), st.integers(1, 800))
def test_a_bitmap_holds_exactly_the_bytes_of_its_extents_below_its_units(
    case: tuple[list[tuple[int, int]], int], shift: int, units: int
) -> None:
    ranges, _ = case
    extents = ExtentSet.from_ranges((s << shift, (e - s) << shift) for s, e in ranges)
    bitmap = Bitmap.from_extents(extents, shift, units)
    assert bitmap.to_extents() == extents.clip(units << shift)
    assert bitmap.size == extents.size_below(units << shift)
