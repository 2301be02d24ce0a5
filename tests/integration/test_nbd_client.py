"""The NBD client against a real qemu-nbd: allocation depths 0, 1, 2 and 3, zeros, many requests.

The layouts are written with qemu-io, and the depth-1 ranges are checked against the disk
reader's own allocation (engines/files/qcow2_alloc.py), which matches qemu-img map.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backchain.core.extents import ExtentSet
from backchain.engines.files.qcow2_alloc import own_allocation
from backchain.engines.qmp.nbd_client import (
    ALLOCATION_DEPTH,
    BASE_ALLOCATION,
    STATE_ZERO,
    Extent,
    NbdClient,
    NbdError,
)
from tests.images import MiB, create, write, write_zeroes


@contextmanager
def qemu_nbd(image: Path, directory: Path, depth: bool = True) -> Iterator[str]:
    """A read-only qemu-nbd serving ``image`` as export ``exp`` on a unix socket."""
    sock = directory / "nbd.sock"
    argv = ["qemu-nbd", "-r", "-t", "-f", "qcow2", "-x", "exp", "-k", str(sock), str(image)]
    if depth:
        argv.insert(1, "-A")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "qemu-nbd made no socket within 30 s"
            time.sleep(0.05)
        yield str(sock)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def three_layers(tmp_path: Path) -> Path:
    """base (data 0-8M), mid (data 4-6M), top (data 1-2M, zeros 40-41M, data 50-51M); 96 MiB."""
    base = create(tmp_path / "base.qcow2", "96M")
    write(base, 0x11, 0, 8 * MiB)
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(mid, 0x22, 4 * MiB, 2 * MiB)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    write(top, 0x33, 1 * MiB, MiB)
    write_zeroes(top, 40 * MiB, MiB)
    write(top, 0x44, 50 * MiB, MiB)
    return top


def ranges(extents: list[Extent]) -> list[tuple[int, int, int]]:
    return [(e.offset // MiB, (e.offset + e.length) // MiB, e.flags) for e in extents]


def test_allocation_depth_names_the_layer_that_holds_each_range(
    three_layers: Path, tmp_path: Path
) -> None:
    with qemu_nbd(three_layers, tmp_path) as sock, NbdClient.connect_unix(sock) as client:
        export = client.negotiate("exp", [ALLOCATION_DEPTH, BASE_ALLOCATION])
        # 96 MiB is more than qemu-nbd's 32 MiB maximum block: several requests are needed,
        # and a 3 MiB step makes many, each ending at a different point of the layout.
        assert export.size == 96 * MiB and export.maximum_block < export.size
        found = client.map_contexts(step=3 * MiB)
        client.disconnect()
    depth = ranges(found[ALLOCATION_DEPTH])
    assert depth == [(0, 1, 3), (1, 2, 1), (2, 4, 3), (4, 6, 2), (6, 8, 3), (8, 40, 0),
                     (40, 41, 1), (41, 50, 0), (50, 51, 1), (51, 96, 0)]  # fmt: skip
    zeros = [(a, b) for a, b, flags in ranges(found[BASE_ALLOCATION]) if flags & STATE_ZERO]
    assert any(a <= 40 and b >= 41 for a, b in zeros)
    assert not any(a < 1 < b or a < 50 < b for a, b in zeros)
    own = ExtentSet.from_ranges((e.offset, e.length) for e in found[ALLOCATION_DEPTH]
                                if e.flags == 1)  # fmt: skip
    assert own == own_allocation(str(three_layers))


def test_a_request_larger_than_the_servers_maximum_is_split(
    three_layers: Path, tmp_path: Path
) -> None:
    with qemu_nbd(three_layers, tmp_path) as sock, NbdClient.connect_unix(sock) as client:
        export = client.negotiate("exp", [ALLOCATION_DEPTH])
        whole = client.map_contexts(step=1 << 40)[ALLOCATION_DEPTH]
        client.disconnect()
    assert whole[0].offset == 0 and whole[-1].offset + whole[-1].length == export.size
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(whole))
    assert ranges(whole)[1] == (1, 2, 1)


def test_a_server_without_the_context_is_refused_by_name(
    three_layers: Path, tmp_path: Path
) -> None:
    with qemu_nbd(three_layers, tmp_path, depth=False) as sock:
        with NbdClient.connect_unix(sock) as client, pytest.raises(NbdError) as caught:
            client.negotiate("exp", [ALLOCATION_DEPTH])
    assert "qemu:allocation-depth" in caught.value.message


def test_an_unknown_export_is_an_error(three_layers: Path, tmp_path: Path) -> None:
    with qemu_nbd(three_layers, tmp_path) as sock:
        with NbdClient.connect_unix(sock) as client, pytest.raises(NbdError) as caught:
            client.negotiate("nosuch", [ALLOCATION_DEPTH])
    assert "refused option" in caught.value.message
