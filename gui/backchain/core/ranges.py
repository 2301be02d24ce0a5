"""Sorted-range kernels behind ExtentSet: numpy sorts and merges, and their pure-Python twins."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Offsets = npt.NDArray[np.int64]

# np.sort(kind="stable") is a timsort, which merges already sorted runs in about linear time;
# beyond a few runs the default (introsort or SIMD) sort of the whole array is faster.
FEW_RUNS = 4

Lists = tuple[list[int], list[int]]


def sorted_runs(parts: Sequence[Offsets], runs: int | None) -> Offsets:
    """The parts joined and sorted; ``runs`` already sorted parts take the merging sort."""
    import numpy as np

    joined = np.concatenate(parts) if len(parts) != 1 else parts[0]
    if runs is not None and runs <= FEW_RUNS:
        return np.sort(joined, kind="stable")
    return np.sort(joined)


def merge(starts: Offsets, ends: Offsets) -> tuple[Offsets, Offsets]:
    """Union of ranges given as separately sorted starts and ends (all ``start < end``).

    The i-th smallest start is below the i-th smallest end, so coverage drops to zero right
    after the i-th end exactly when the next start lies beyond it; touching ranges merge.
    """
    import numpy as np

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


def normalise(starts: Offsets, ends: Offsets) -> tuple[Offsets, Offsets]:
    """Sort, drop empty ranges and merge overlapping or touching ones."""
    import numpy as np

    keep = ends > starts
    return merge(np.sort(starts[keep]), np.sort(ends[keep]))


def normalise_pairs(pairs: Iterable[tuple[int, int]]) -> Lists:
    """The pure-Python _normalise: sort the non-empty ranges, merge overlapping or touching."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted((s, e) for s, e in pairs if e > s):
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def intersect_lists(a: Lists, b: Lists) -> Lists:
    """A sweep over two normalised sets; the pieces come out sorted and never touching."""
    a_starts, a_ends = a
    b_starts, b_ends = b
    starts: list[int] = []
    ends: list[int] = []
    i = j = 0
    while i < len(a_starts) and j < len(b_starts):
        low = max(a_starts[i], b_starts[j])
        high = min(a_ends[i], b_ends[j])
        if low < high:
            starts.append(low)
            ends.append(high)
        if a_ends[i] < b_ends[j]:
            i += 1
        else:
            j += 1
    return starts, ends
