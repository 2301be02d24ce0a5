"""Sets built of units (ExtentSet.of_units), with packed flags or not, give the same exposure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchain.core import exposure, valueclass
from backchain.core.bitmap import Bitmap, pack_blocks
from backchain.core.exposure import RangeAlgebra, _Walk, expose
from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, Layer
from tests.unit.test_exposure import commits

if TYPE_CHECKING:
    from backchain.core.bitmap import Words

aligned = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=10)


def rebuilt(
    extents: ExtentSet | None, shift: int, as_arrays: bool, packed: bool = False
) -> ExtentSet | None:
    """The same bytes built from units of ``2**shift`` (which must divide every boundary),
    with ``packed``, also as the packed flags of the blocks of 64 units that hold any."""
    if extents is None:
        return None
    unit = 1 << shift
    assert all(s % unit == 0 and e % unit == 0 for s, e in extents), "the unit must divide"
    starts = [s >> shift for s, _ in extents]
    ends = [e >> shift for _, e in extents]
    if as_arrays:
        words = packed_flags(starts, ends) if packed else None
        return ExtentSet.of_units(
            np.array(starts), np.array(ends), shift, normalised=True, packed=words
        ).alias()
    return ExtentSet.of_units(starts, ends, shift, normalised=True).alias()


def packed_flags(starts: list[int], ends: list[int]) -> Words:
    """Packed flags as the qcow2 reader packs them: only the blocks that were read (here, those
    holding a unit of the set), in blocks of 64 units."""
    count = (max(ends, default=0) + 63) // 64
    flags = np.zeros(count * 64, dtype=bool)
    for start, end in zip(starts, ends, strict=True):
        flags[start:end] = True
    blocks = np.flatnonzero(flags.reshape(-1, 64).any(axis=1))
    return pack_blocks(flags.reshape(-1, 64)[blocks].reshape(-1), blocks, 64)


@st.composite
def grained(draw: st.DrawFn) -> tuple[ImageGraph, ImageGraph, list[Layer], int, int]:
    """A commit, and the same graph with some layers' sets rebuilt of a unit that may be
    finer than their true alignment (or than the other layers'): the grain is a lower bound."""
    graph, chain, top, base = draw(commits())
    layers = []
    for layer in graph:
        if draw(st.booleans()):
            layers.append(layer)
            continue
        # A unit must divide the boundaries of both sets it rebuilds (zeros may be finer).
        true_shift = min(layer.extents.alignment_shift if layer.extents else 4,
                         layer.zeros.alignment_shift if layer.zeros else 4, 4)  # fmt: skip
        shift = draw(st.integers(0, true_shift))
        arrays, packed = draw(st.booleans()), draw(st.booleans())
        layers.append(valueclass.replace(layer,
                                          extents=rebuilt(layer.extents, shift, arrays, packed),
                                          zeros=rebuilt(layer.zeros, shift, arrays)))  # fmt: skip
    return graph, ImageGraph(layers), chain, top, base


@settings(max_examples=300, deadline=None)
@given(grained())
def test_sets_built_of_units_give_the_sorted_range_exposure(
    case: tuple[ImageGraph, ImageGraph, list[Layer], int, int],
) -> None:
    graph, regrained, chain, top, base = case
    chain_again = regrained.chain(chain[0].path)
    saved = exposure.FEW_RANGES
    try:
        exposure.FEW_RANGES = -1  # take the bitmap path even for these few ranges
        with_bitmaps = expose(regrained, chain_again, top, base)
    finally:
        exposure.FEW_RANGES = saved
    assert with_bitmaps == _Walk(RangeAlgebra()).run(graph, chain, top, base)
    # Sorted ranges over the sets held in units make their byte offsets on the way.
    assert _Walk(RangeAlgebra()).run(regrained, chain_again, top, base) == with_bitmaps


@given(aligned, st.integers(0, 5), st.integers(0, 5), st.booleans())
def test_of_units_knows_a_unit_that_divides_every_boundary(
    pairs: list[tuple[int, int]], shift: int, asked: int, as_arrays: bool
) -> None:
    plain = ExtentSet.from_ranges((s << shift, n << shift) for s, n in pairs)
    starts = [s >> shift for s, _ in plain]
    ends = [e >> shift for _, e in plain]
    made = ExtentSet.of_units(
        np.array(starts) if as_arrays else starts, np.array(ends) if as_arrays else ends, shift
    )
    twin = made.alias()
    assert made == plain and twin == plain and twin.size == plain.size
    assert made.grain_shift <= made.alignment_shift == plain.alignment_shift
    if len(plain):
        assert made.grain_shift == twin.grain_shift == shift
    assert made.aligned_to(asked) == twin.aligned_to(asked) == (plain.alignment_shift >= asked)
    assert plain.grain_shift == plain.alignment_shift
    assert made.end == twin.end == plain.end and len(made) == len(plain)
    for finer in range(shift + 1):
        for which in (0, 1):
            expected = [pair[which] >> finer for pair in plain]
            assert twin.unit_bounds(finer, which).tolist() == expected
    assert list(made) == list(plain)  # byte offsets made from the units
    assert made.size == plain.size and made.unit_bounds(shift, 1).tolist() == ends


@given(aligned, aligned, st.integers(0, 2), st.integers(1, 70), st.integers(-9, 600))
def test_minus_size_below_and_union_of_match_the_sets(
    a: list[tuple[int, int]], b: list[tuple[int, int]], shift: int, units: int, limit: int
) -> None:
    ea = ExtentSet.from_ranges((s << shift, n << shift) for s, n in a)
    eb = ExtentSet.from_ranges((s << shift, n << shift) for s, n in b)
    ba, bb = Bitmap.from_extents(ea, shift, units), Bitmap.from_extents(eb, shift, units)
    scratch = np.full_like(ba.words, 0xFFFF)  # whatever the buffer held before
    assert ba.minus_size_below(bb, limit, scratch) == ba.minus(bb).size_below(limit)
    union = Bitmap.union_of([ba, bb, ba], shift, units)
    assert union.words.tolist() == (ba | bb).words.tolist()
    assert Bitmap.union_of([ba], shift, units) is ba
    assert Bitmap.union_of([], shift, units).size == 0


def test_a_unit_finer_than_the_boundaries_is_scanned_past_when_it_costs_the_bitmaps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sets built of single bytes whose boundaries are all 64 KiB multiples, on a 64 GiB disk:
    bitmaps of bytes are unaffordable, so the scan finds the 64 KiB unit and uses it."""
    chunk = 64 << 10

    def layer(name: str, backing: str | None, *chunks: int) -> Layer:
        starts = [c * chunk for c in chunks]
        ends = [s + chunk for s in starts]
        return Layer(path=f"/img/{name}", format="qcow2", virtual_size=64 << 30,
                     backing_name=backing, backing_format=None if backing is None else "qcow2",
                     backing_path=None if backing is None else f"/img/{backing}",
                     extents=ExtentSet.of_units(starts, ends, 0))  # fmt: skip

    graph = ImageGraph([layer("base", None, 1, 2, 9), layer("mid", "base", 2, 5, 7),
                        layer("top", "mid", 5, 11), layer("side", "base", 3, 7, 11)])  # fmt: skip
    chain = graph.chain("/img/top")
    shifts: list[int] = []
    original = exposure.BitmapAlgebra.__init__

    def spy(self: exposure.BitmapAlgebra, shift: int, units: int) -> None:
        shifts.append(shift)
        original(self, shift, units)

    monkeypatch.setattr(exposure.BitmapAlgebra, "__init__", spy)
    monkeypatch.setattr(exposure, "FEW_RANGES", -1)
    found = expose(graph, chain, 0, 2)
    assert shifts == [16]
    assert found == _Walk(RangeAlgebra()).run(graph, chain, 0, 2)
    assert found.bytes_to_copy == 4 * chunk  # chunks 2, 5, 7 and 11
