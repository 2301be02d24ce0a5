"""The pure-Python L2 scan finds exactly the clusters that reading entry by entry finds."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from backchain.core.extents import ExtentSet
from backchain.engines.files.qcow2_alloc import _allocation_numpy, _allocation_pure

COPIED, COMPRESSED, ZERO = 1 << 63, 1 << 62, 1
OFFSET = 0x00FFFFFFFFFFFE00
PER_TABLE = 64  # the smallest table: 512-byte clusters

# Entries as they occur: empty, data (with or without COPIED), zero clusters (with or without
# an offset), compressed, and flag bits alone that define nothing (COPIED, reserved bits).
entry = st.one_of(
    st.just(0),
    st.integers(1, OFFSET >> 9).map(lambda n: (n << 9) | COPIED),
    st.integers(1, OFFSET >> 9).map(lambda n: n << 9),
    st.sampled_from([ZERO, ZERO | COPIED, (7 << 9) | ZERO]),
    st.integers(1, (1 << 62) - 1).map(lambda n: n | COMPRESSED),
    st.sampled_from([COPIED, 0x1FE, 1 << 56, 0x100]),
)


def by_rules(entries: list[int], tables: list[int]) -> tuple[list[int], list[int]]:
    """Guest cluster numbers that an entry defines, and those that are zero clusters."""
    own, zeros = [], []
    for index, value in enumerate(entries):
        guest = tables[index // PER_TABLE] * PER_TABLE + index % PER_TABLE
        if value & (COMPRESSED | ZERO | OFFSET):
            own.append(guest)
            if value & ZERO and not value & COMPRESSED:
                zeros.append(guest)
    return own, zeros


def clusters(extents: ExtentSet, cluster: int) -> list[int]:
    return [unit for start, end in extents for unit in range(start // cluster, end // cluster)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=5, unique=True), st.data())
def test_pure_scan_follows_the_entry_rules(table_numbers: list[int], data: st.DataObject) -> None:
    tables = sorted(table_numbers)
    entries = data.draw(st.lists(entry, min_size=len(tables) * PER_TABLE,
                                 max_size=len(tables) * PER_TABLE))  # fmt: skip
    raw = struct.pack(f">{len(entries)}Q", *entries)
    cluster = 512
    own, zeros = _allocation_pure(raw, tables, PER_TABLE, cluster)
    want_own, want_zeros = by_rules(entries, tables)
    assert clusters(own, cluster) == want_own
    assert clusters(zeros, cluster) == want_zeros
    # The vectorised reader, which also packs its flags, agrees.
    own_np, zeros_np = _allocation_numpy(raw, tables, PER_TABLE, cluster, False)
    assert own_np == own and zeros_np == zeros
