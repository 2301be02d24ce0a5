"""Extent arithmetic checked against a plain set of byte offsets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchain.core.bitmap import Bitmap
from backchain.core.extents import PURE_LIMIT, ExtentSet, union_all

ranges = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=12)


def as_bytes(extents: ExtentSet) -> set[int]:
    return {offset for start, end in extents for offset in range(start, end)}


def from_pairs(pairs: list[tuple[int, int]]) -> tuple[ExtentSet, set[int]]:
    return ExtentSet.from_ranges(pairs), {o for s, n in pairs for o in range(s, s + n)}


@given(ranges, ranges)
def test_union_intersection_difference_match_sets(a: list, b: list) -> None:
    ea, sa = from_pairs(a)
    eb, sb = from_pairs(b)
    assert as_bytes(ea.union(eb)) == sa | sb
    assert as_bytes(ea.intersection(eb)) == sa & sb
    assert as_bytes(ea.difference(eb)) == sa - sb
    assert ea.size == len(sa)


@given(ranges)
def test_normalised_ranges_are_sorted_and_disjoint(a: list) -> None:
    extents, _ = from_pairs(a)
    pairs = list(extents)
    assert all(s < e for s, e in pairs)
    assert all(pairs[i][1] < pairs[i + 1][0] for i in range(len(pairs) - 1))


@given(ranges, st.integers(0, 260))
def test_complement_within_limit(a: list, limit: int) -> None:
    extents, offsets = from_pairs(a)
    assert as_bytes(extents.complement(limit)) == set(range(limit)) - offsets


def test_touching_ranges_merge_and_union_all_of_nothing_is_empty() -> None:
    assert list(ExtentSet.from_ranges([(0, 10), (10, 5)])) == [(0, 15)]
    assert union_all([]).size == 0
    assert ExtentSet.empty().intersection(ExtentSet.span(0, 9)).size == 0


@given(st.lists(ranges, max_size=6))
def test_union_all_of_many_sets_matches_sets(lists: list) -> None:
    pairs = [from_pairs(a) for a in lists]
    expected: set[int] = set().union(*(offsets for _, offsets in pairs))
    assert as_bytes(union_all(extents for extents, _ in pairs)) == expected


@given(ranges, ranges, st.integers(-5, 260))
def test_sizes_without_building_match_sets(a: list, b: list, limit: int) -> None:
    ea, sa = from_pairs(a)
    eb, sb = from_pairs(b)
    assert ea.intersection_size(eb) == len(sa & sb)
    assert ea.difference_size(eb) == len(sa - sb)
    assert ea.size_below(limit) == len({o for o in sa if o < limit})
    assert as_bytes(ea.clip(limit)) == {o for o in sa if o < limit}


@given(ranges, ranges, st.integers(0, 260))
def test_results_stay_normalised(a: list, b: list, limit: int) -> None:
    ea, _ = from_pairs(a)
    eb, _ = from_pairs(b)
    for result in (
        ea.union(eb),
        ea.intersection(eb),
        ea.difference(eb),
        ea.complement(limit),
        ea.clip(limit),
    ):
        # The same set normalised from scratch must be identical, array for array.
        assert result == ExtentSet.from_ranges((s, e - s) for s, e in result)
        pairs = list(result)
        assert all(s < e for s, e in pairs)
        assert all(pairs[i][1] < pairs[i + 1][0] for i in range(len(pairs) - 1))


aligned = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10)), max_size=12)


@given(aligned, aligned, st.integers(0, 3), st.integers(0, 70), st.integers(-9, 600))
def test_bitmap_matches_sets(a: list, b: list, shift: int, units: int, limit: int) -> None:
    unit = 1 << shift
    ea, sa = from_pairs([(s * unit, n * unit) for s, n in a])
    eb, sb = from_pairs([(s * unit, n * unit) for s, n in b])
    universe = set(range(units * unit))
    ba, bb = Bitmap.from_extents(ea, shift, units), Bitmap.from_extents(eb, shift, units)
    assert as_bytes(ba.to_extents()) == sa & universe
    assert as_bytes((ba | bb).to_extents()) == (sa | sb) & universe
    assert as_bytes(ba.minus(bb).to_extents()) == (sa - sb) & universe
    assert ba.size == len(sa & universe)
    assert ba.size_below(limit) == len({o for o in sa & universe if o < limit})
    assert ba.any() == bool(sa & universe)
    assert Bitmap.empty(shift, units).size == 0


@given(aligned, st.integers(0, 4))
def test_alignment_shift_is_the_largest_power_of_two_dividing_every_boundary(
    a: list, shift: int
) -> None:
    extents, _ = from_pairs([(s << shift, n << shift) for s, n in a])
    found = extents.alignment_shift
    boundaries = [x for pair in extents for x in pair]
    assert all(x % (1 << found) == 0 for x in boundaries)
    if boundaries and any(boundaries):
        assert found >= shift
        assert any(x % (2 << found) for x in boundaries)


def test_a_misaligned_set_is_refused_as_a_bitmap() -> None:
    with pytest.raises(ValueError, match="not aligned"):
        Bitmap.from_extents(ExtentSet.span(0, 3), 1, 8)


def as_arrays(extents: ExtentSet) -> ExtentSet:
    """The same set held as numpy arrays, so that its operations take the numpy path."""
    return ExtentSet(np.array(extents.starts), np.array(extents.ends), normalised=True)


@given(ranges, ranges, st.integers(-5, 260))
def test_list_and_array_sets_give_the_same_results(a: list, b: list, limit: int) -> None:
    ea, _ = from_pairs(a)
    eb, _ = from_pairs(b)
    na, nb = as_arrays(ea), as_arrays(eb)
    assert na == ea and hash(na) == hash(ea)
    assert list(na.union(nb)) == list(ea.union(eb)) == list(na.union(eb))
    assert list(na.intersection(nb)) == list(ea.intersection(eb)) == list(ea.intersection(nb))
    assert list(na.difference(nb)) == list(ea.difference(eb))
    assert na.intersection_size(nb) == ea.intersection_size(eb)
    assert list(na.clip(limit)) == list(ea.clip(limit))
    assert list(na.complement(max(limit, 0))) == list(ea.complement(max(limit, 0)))
    assert na.size == ea.size and na.end == ea.end
    assert na.alignment_shift == ea.alignment_shift


def test_sets_beyond_the_pure_limit_are_held_as_arrays() -> None:
    many = [(offset * 4, 1) for offset in range(PURE_LIMIT + 1)]
    big = ExtentSet.from_ranges(many)
    assert len(big) == PURE_LIMIT + 1 and big == as_arrays(big)
    assert big.union(ExtentSet.span(1, 2)).size == big.size + 1


def test_the_size_of_ranges_near_the_int64_limit_is_exact() -> None:
    # The sums of the starts and of the ends both wrap around int64 here.
    starts = np.array([(1 << 62) - 10, (1 << 62) + 100, (1 << 63) - 50], dtype=np.int64)
    extents = ExtentSet(starts, starts + np.array([5, 7, 9]), normalised=True)
    assert extents.size == 21
