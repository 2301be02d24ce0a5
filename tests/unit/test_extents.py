"""Extent arithmetic checked against a plain set of byte offsets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backchain.core.extents import ExtentSet, union_all

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
