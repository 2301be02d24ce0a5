"""The L1/L2 allocation reader gives exactly the extents of qemu-img map on many real images."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from backchain.core.errors import ImageError
from backchain.core.extents import ExtentSet
from backchain.engines.files.qcow2_alloc import (
    FallbackRequired,
    own_allocation,
    own_allocation_and_zeros,
)
from tests.helpers.checks import qemu_io
from tests.images import checksums, create, run

KiB = 1 << 10
MiB = 1 << 20
CLUSTER_SIZES = [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 512 * KiB, 2 * MiB]


def qemu_img_own_extents(path: Path, zeros: bool = False) -> ExtentSet:
    """The reference: map entries of the layer opened alone that are present at depth 0
    (with ``zeros``, only those that read as zeros without data: zero clusters)."""
    spec = {"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": str(path)}}
    out = run(["qemu-img", "map", "--output=json", "-U", "json:" + json.dumps(spec)])
    return ExtentSet.from_ranges(
        (int(e["start"]), int(e["length"]))
        for e in json.loads(out)
        if e["depth"] == 0 and e["present"] and (not zeros or (e["zero"] and not e["data"]))
    )


def random_ops(
    rng: random.Random, size: int, cluster: int, v3: bool, count: int, preallocated: bool
) -> list[str]:
    """Writes, zero writes (with and without unmap), discards and compressed writes."""
    ops: list[str] = []
    compressed: list[str] = []
    used: set[int] = set()
    for _ in range(count):
        kind = rng.choice(["write", "write", "zero", "zero-unmap", "discard", "compressed"])
        length = rng.choice([512, 4 * KiB, cluster, 3 * cluster + 1536, 17 * cluster])
        length = min(length, size)
        start = rng.randrange(0, size - length + 1, 512)
        if kind == "write":
            ops.append(f"write -P {rng.randrange(1, 255)} {start} {length}")
        elif kind == "zero":
            ops.append(f"write -z {start} {length}")
        elif kind == "zero-unmap":
            ops.append(f"write -z -u {start} {length}")
        elif kind == "discard":
            ops.append(f"discard {start} {length}")
        else:
            # qemu writes compressed clusters only whole, and only where nothing is allocated
            # yet, so they go first, each to a cluster of its own.
            whole = size // cluster
            index = rng.randrange(0, whole) if whole else 0
            if whole == 0 or index in used or preallocated:
                continue
            used.add(index)
            compressed.append(f"write -c -P {rng.randrange(1, 255)} {index * cluster} {cluster}")
    if not v3:
        ops = [op for op in ops if "-z" not in op or rng.random() < 0.5]
    return compressed + ops


def build_random_image(tmp_path: Path, seed: int) -> Path:
    """One image with random format options, optional backing file and random operations."""
    rng = random.Random(seed)
    v3 = rng.random() < 0.75
    cluster = rng.choice(CLUSTER_SIZES)
    extended = v3 and cluster >= 16 * KiB and rng.random() < 0.35
    size = rng.randrange(1, 48) * MiB + rng.choice([0, 512, 4608, cluster // 2 + 512])
    options = [f"cluster_size={cluster}", "compat=1.1" if v3 else "compat=0.10"]
    if extended:
        options.append("extended_l2=on")
    preallocated = v3 and rng.random() < 0.15
    if preallocated:
        options.append("preallocation=metadata")
    base = tmp_path / "base.qcow2"
    image = tmp_path / "layer.qcow2"
    if rng.random() < 0.5:
        create(base, str(size))
        qemu_io(base, [f"write -P 7 0 {min(size, 8 * MiB)}"])
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", ",".join(options)]
        run([*argv, "-b", "base.qcow2", "-F", "qcow2", str(image)], cwd=tmp_path)
    else:
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", ",".join(options), str(image),
             str(size)])  # fmt: skip
    ops = random_ops(rng, size, cluster, v3, rng.randrange(1, 25), preallocated)
    if ops:
        qemu_io(image, ops)
    if rng.random() < 0.15:
        packed = tmp_path / "packed.qcow2"
        convert = ["qemu-img", "convert", "-c", "-O", "qcow2", "-o", ",".join(options[:2])]
        run([*convert, str(image), str(packed)])
        return packed
    return image


@pytest.mark.parametrize("seed", range(60))
def test_random_image_matches_qemu_img_map(tmp_path: Path, seed: int) -> None:
    image = build_random_image(tmp_path, seed)
    before = checksums([image])
    for vectorised in (True, False):  # numpy for large tables, Python for small ones
        own, zeros = own_allocation_and_zeros(str(image), vectorised=vectorised)
        assert own == qemu_img_own_extents(image)
        assert zeros == qemu_img_own_extents(image, zeros=True)
    assert checksums([image]) == before


@pytest.mark.parametrize("cluster", CLUSTER_SIZES)
@pytest.mark.parametrize("compat", ["0.10", "1.1"])
def test_every_cluster_size_and_version_with_an_odd_virtual_size(
    tmp_path: Path, cluster: int, compat: str
) -> None:
    image = tmp_path / "odd.qcow2"
    size = 5 * cluster + 3 * 512
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster},compat={compat}",
         str(image), str(size)])  # fmt: skip
    # The last, partial cluster is written, so the extent must stop at the virtual size.
    qemu_io(image, [f"write -P 1 {size - 1024} 1024", f"write -P 2 {cluster} 512"])
    extents = own_allocation(str(image))
    assert extents == qemu_img_own_extents(image)
    assert extents.ends[-1] == size


def test_zero_clusters_in_an_overlay_count_as_allocated(tmp_path: Path) -> None:
    create(tmp_path / "base.qcow2", "16M")
    qemu_io(tmp_path / "base.qcow2", ["write -P 5 0 16M"])
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    qemu_io(top, ["write -z 1M 2M", "write -z -u 8M 64k", "discard 12M 1M"])
    extents = own_allocation(str(top))
    assert extents == qemu_img_own_extents(top)
    assert extents.size == 2 * MiB + 64 * KiB + MiB


@pytest.mark.parametrize("cluster", [64 * KiB, 2 * MiB])
def test_compressed_clusters_from_convert(tmp_path: Path, cluster: int) -> None:
    source = create(tmp_path / "src.qcow2", "40M")
    qemu_io(source, ["write -P 3 0 5M", "write -P 4 20M 1M", "write -z 30M 4M"])
    packed = tmp_path / "packed.qcow2"
    run(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", f"cluster_size={cluster}",
         str(source), str(packed)])  # fmt: skip
    assert own_allocation(str(packed)) == qemu_img_own_extents(packed)


def test_extended_l2_subclusters_are_exact(tmp_path: Path) -> None:
    image = tmp_path / "ext.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k",
         str(image), "10M"])  # fmt: skip
    qemu_io(image, ["write -P 1 4k 4k", "write -z 1M 12k", "write -P 2 200k 100k", "discard 8M 8k"])
    extents = own_allocation(str(image))
    assert extents == qemu_img_own_extents(image)
    assert extents.starts[0] == 4 * KiB  # subcluster granularity, not the 128 KiB cluster
    assert own_allocation_and_zeros(str(image))[1] == ExtentSet.span(MiB, MiB + 12 * KiB)


def test_an_external_data_file_asks_for_qemu_img(tmp_path: Path) -> None:
    image = tmp_path / "ext-data.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}",
         str(image), "4M"])  # fmt: skip
    with pytest.raises(FallbackRequired, match="external data file") as caught:
        own_allocation(str(image))
    assert caught.value.path == str(image)


def test_a_raw_file_asks_for_qemu_img(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 4096)
    with pytest.raises(FallbackRequired, match="not a qcow2 image"):
        own_allocation(str(raw))


def test_a_missing_file_is_an_image_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone.qcow2"
    with pytest.raises(ImageError, match=r"gone\.qcow2: does not exist"):
        own_allocation(str(missing))


def test_a_truncated_image_is_an_image_error(tmp_path: Path) -> None:
    image = create(tmp_path / "cut.qcow2", "8M")
    qemu_io(image, ["write -P 1 0 1M"])
    # Cut the file just after the header so that the L1 table (or an L2 table) is missing.
    data = image.read_bytes()
    image.write_bytes(data[: 64 * KiB + 8])
    with pytest.raises(ImageError, match=r"cut\.qcow2: .*beyond the end of the file"):
        own_allocation(str(image))


def test_an_image_in_use_is_read_without_taking_its_lock(tmp_path: Path) -> None:
    image = create(tmp_path / "busy.qcow2", "8M")
    qemu_io(image, ["write -P 1 1M 1M"])
    # qemu-io holds the write lock while it waits on stdin, as a running QEMU would.
    holder = subprocess.Popen(
        ["qemu-io", "-f", "qcow2", str(image)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        assert own_allocation(str(image)) == ExtentSet.span(MiB, 2 * MiB)
    finally:
        assert holder.stdin is not None
        holder.stdin.write(b"quit\n")
        holder.stdin.close()
        holder.wait(timeout=30)
