"""The qcow2 reader's packed cluster flags are the bitmap a plan would build from its ranges."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from backchain.core.bitmap import Bitmap
from backchain.core.extents import ExtentSet
from backchain.engines.files.qcow2_alloc import own_allocation_and_zeros
from tests.helpers.checks import qemu_io
from tests.images import checksums, run
from tests.integration.test_qcow2_alloc import qemu_img_own_extents

KiB = 1 << 10


def scattered_image(tmp_path: Path, cluster: int, seed: int) -> Path:
    """Many single clusters, zero clusters among them, in L2 tables 0 and 2 but not 1, and a
    virtual size that ends inside the last table (and inside a cluster)."""
    rng = random.Random(seed)
    per_table = cluster // 8
    span = per_table * cluster  # the guest bytes one L2 table maps
    size = 2 * span + span // 3 + 512
    image = tmp_path / "scattered.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}",
         str(image), str(size)])  # fmt: skip
    last = (size - 1) // cluster
    wanted = [c for c in range(last + 1) if not per_table <= c < 2 * per_table]
    chosen = sorted(rng.sample(wanted, min(len(wanted) // 3, 400)))
    ops = [
        (f"write -z {c * cluster} {cluster}" if rng.random() < 0.2 else
         f"write -P {c % 200 + 1} {c * cluster} {min(cluster, size - c * cluster)}")
        for c in chosen
    ]  # fmt: skip
    qemu_io(image, ops)
    return image


@pytest.mark.parametrize(("cluster", "seed"), [(4 * KiB, 1), (4 * KiB, 2), (16 * KiB, 3)])
def test_packed_flags_equal_the_bitmap_of_qemu_img_maps_ranges(
    tmp_path: Path, cluster: int, seed: int
) -> None:
    image = scattered_image(tmp_path, cluster, seed)
    before = checksums([image])
    own, _ = own_allocation_and_zeros(str(image), vectorised=True)
    truth = qemu_img_own_extents(image)
    assert own == truth
    shift = cluster.bit_length() - 1
    # The reader packed its flags (so that this test checks them, not the scatter path).
    assert own.packed_words(shift) is not None
    built = ExtentSet(truth.starts, truth.ends)  # no packed words: built unit by unit
    end = (truth.end >> shift) + 1
    for units in (end - 1, end, end + 1, end + 63, (end // 64) * 64, end // 2, 1):
        mine = Bitmap.from_extents(own, shift, units)
        theirs = Bitmap.from_extents(built, shift, units)
        assert mine.words.tolist() == theirs.words.tolist(), units
        assert mine.size == theirs.size
    assert checksums([image]) == before


def test_few_ranges_over_many_tables_keep_no_packed_words(tmp_path: Path) -> None:
    """Packed words larger than the ranges they replace are not kept (memory)."""
    image = tmp_path / "sparse.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", str(image), "1G"])
    qemu_io(image, ["write -P 1 0 4096", "write -P 2 900M 4096"])
    own, _ = own_allocation_and_zeros(str(image), vectorised=True)
    assert own == qemu_img_own_extents(image)
    assert own.packed_words(12) is None
