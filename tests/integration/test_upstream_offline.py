"""QEMU's offline commit iotests (020, 097, 274, commit-zero-blocks), run through Backchain."""

from __future__ import annotations

import json
from pathlib import Path

from tests.images import MiB, backchain, create, reads, run, write, write_zeroes

GiB = 1 << 30


def own_map(path: Path) -> list[tuple[int, int]]:
    """The layer's own allocation (depth-0, present entries of qemu-img map)."""
    spec = {"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": str(path)}}
    entries = json.loads(
        run(["qemu-img", "map", "-U", "--output=json", "json:" + json.dumps(spec)])
    )
    return [(e["start"], e["length"]) for e in entries if e["depth"] == 0 and e.get("present")]


def test_iotest_020_commit_interleaved_sectors_below_and_above_4g(tmp_path: Path) -> None:
    """Alternating 512-byte sectors of base and top, at 0 and at 4 GiB, all land in base."""
    base = create(tmp_path / "base.qcow2", "6G")
    for offset in (0, 4 * GiB):
        for sector in range(0, 16, 2):
            write(base, 0x11, offset + sector * 512, 512)
    # Written after base is filled: top's first write copies base's cluster up (COW).
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    for offset in (0, 4 * GiB):
        for sector in range(0, 16, 2):
            write(top, 0x22, offset + (sector + 1) * 512, 512)
    result = backchain("commit", str(top), "--yes")
    assert result.returncode == 0, result.stderr
    for offset in (0, 4 * GiB):
        for sector in range(0, 16, 2):
            assert reads(base, 0x11, offset + sector * 512, 512)
            assert reads(base, 0x22, offset + (sector + 1) * 512, 512)
        assert reads(base, 0, offset + 64 * 1024, 64 * 1024)


def test_iotest_097_top_is_never_emptied(tmp_path: Path) -> None:
    """qemu-img commit empties top without -b; Backchain always passes -b, so top keeps its data."""
    base = create(tmp_path / "base.qcow2", "16M")
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    write(mid, 0x22, MiB, MiB)
    write(top, 0x33, 2 * MiB, MiB)
    before = own_map(mid)
    result = backchain("commit", str(top), "--top", str(mid), "--yes")
    assert result.returncode == 0, result.stderr
    assert own_map(mid) == before and reads(mid, 0x22, MiB, MiB)
    assert reads(base, 0x22, MiB, MiB) and reads(top, 0x33, 2 * MiB, MiB)


def test_iotest_274_commit_into_a_shorter_base_keeps_top_s_view(tmp_path: Path) -> None:
    """A base shorter than top grows, so that top's view (and its tail) reads the same after."""
    base = create(tmp_path / "base.qcow2", "1M")
    write(base, 0x11, 0, 512 * 1024)
    top = tmp_path / "top.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(top),
         "2M"], cwd=tmp_path)  # fmt: skip
    write(top, 0x33, 1536 * 1024, 512 * 1024)
    result = backchain("commit", str(top), "--yes")
    assert result.returncode == 0, result.stderr
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(base)]))
    assert info["virtual-size"] == 2 * MiB
    assert reads(base, 0x11, 0, 512 * 1024) and reads(base, 0x33, 1536 * 1024, 512 * 1024)
    assert reads(base, 0, MiB, 512 * 1024)


def test_iotest_commit_zero_blocks_zero_clusters_hide_base_data(tmp_path: Path) -> None:
    """Zero clusters in top are committed as zeros: base no longer reads its old data there."""
    base = create(tmp_path / "base.qcow2", "16M")
    write(base, 0x11, 0, 4 * MiB)
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    write_zeroes(top, MiB, MiB)
    plan = backchain("plan", str(top), "--json")
    assert plan.returncode == 0 and json.loads(plan.stdout)["bytes_to_copy"] == MiB
    result = backchain("commit", str(top), "--yes")
    assert result.returncode == 0, result.stderr
    assert (
        reads(base, 0x11, 0, MiB) and reads(base, 0, MiB, MiB) and reads(base, 0x11, 2 * MiB, MiB)
    )
