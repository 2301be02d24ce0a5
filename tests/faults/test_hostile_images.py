"""Fault 6: 2,000 hostile images from hypothesis (bit flips, truncations, absurd header fields and
backing names, loops, self-reference) and a 300-layer chain, through header reading, chain
walking, directory scans and planning. Only Backchain's own errors may come out; nothing may hang
(5 s watchdog per example) or print a traceback."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchain.core.errors import BackchainError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitRequest
from backchain.engines.files.qcow2 import read_header
from backchain.engines.files.scan import read_chain, scan_directories, walk_headers
from backchain.engines.registry import make_plan
from tests.faults.helpers import record
from tests.images import run

HANG_SECONDS = 5
# (offset, width) of every fixed qcow2 header field, v2 and v3.
FIELDS = [(4, 4), (8, 8), (16, 4), (20, 4), (24, 8), (32, 4), (36, 4), (40, 8), (48, 8), (56, 4),
          (60, 4), (64, 8), (72, 8), (80, 8), (88, 8), (96, 4), (100, 4)]  # fmt: skip
NAMES = ["img.qcow2", "./img.qcow2", "loop.qcow2", "base.qcow2", "/", ".", "..", "/dev/zero",
         "/proc/self/mem", "nbd://127.0.0.1:9/x", 'json:{"file":{"driver":"nbd"}}',
         "http://127.0.0.1:9/x", "file:img.qcow2", "\n", " ", "-b", "missing.qcow2",
         "x" * 1023, "ü" * 400, "sub/../img.qcow2"]  # fmt: skip
SETTINGS = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def qemu_img_create(directory: Path, name: str, *options: str) -> None:
    """qemu-img create with 4 KiB clusters (small files), in ``directory``."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", *options, name, "4M"], cwd=directory)


def on(backing: str) -> tuple[str, ...]:
    """Options for a backing file that qemu-img does not open (-u)."""
    return ("-u", "-b", backing, "-F", "qcow2")


@functools.cache
def templates() -> dict[str, bytes]:
    """Real qcow2 files from qemu-img: v3 and v2, with and without backing files."""
    directory = Path(tempfile.mkdtemp(prefix="backchain-templates-"))
    small = ("-o", "cluster_size=4096")
    qemu_img_create(directory, "base.qcow2", *small)
    qemu_img_create(directory, "v3.qcow2", *small, *on("base.qcow2"))
    qemu_img_create(directory, "v2.qcow2", "-o", "compat=0.10,cluster_size=4096", *on("base.qcow2"))
    qemu_img_create(directory, "big-clusters.qcow2", *on("base.qcow2"))
    qemu_img_create(directory, "loop.qcow2", *small, *on("img.qcow2"))
    found = {p.name: p.read_bytes() for p in directory.iterdir()}
    shutil.rmtree(directory)
    return found


class Hang(Exception):
    """The watchdog fired."""


@contextlib.contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """Raise Hang in this (main) thread if the block runs longer than ``seconds``."""

    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def exercise(directory: Path, image: Path) -> None:
    """Every header-level entry point on one image; only BackchainError may escape each."""
    output = io.StringIO()
    with (
        watchdog(HANG_SECONDS),
        contextlib.redirect_stderr(output),
        contextlib.redirect_stdout(output),
    ):
        for call in (read_header, walk_headers, lambda p: read_chain(p, with_qemu_info=False)):
            with contextlib.suppress(BackchainError):
                call(str(image))
        with contextlib.suppress(BackchainError):
            graph = ImageGraph(walk_headers(str(image)))
            graph = scan_directories(graph, [str(directory)])
            make_plan(graph, CommitRequest(image=str(image.resolve())))
        with contextlib.suppress(BackchainError):
            graph = ImageGraph(walk_headers(str(directory / "base.qcow2")))
            scan_directories(graph, [str(directory)])
    assert "Traceback" not in output.getvalue()


def materialise(blob: bytes) -> tuple[Path, Path]:
    """A directory with the hostile img.qcow2, a real base, and loop.qcow2 backed by img."""
    directory = Path(tempfile.mkdtemp(prefix="hostile-"))
    (directory / "img.qcow2").write_bytes(blob)
    (directory / "base.qcow2").write_bytes(templates()["base.qcow2"])
    (directory / "loop.qcow2").write_bytes(templates()["loop.qcow2"])
    return directory, directory / "img.qcow2"


def check(blob: bytes) -> None:
    """Run one example and count it."""
    directory, image = materialise(blob)
    try:
        exercise(directory, image)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    record("6. hostile images", True)


template_names = st.sampled_from(
    ["v3.qcow2", "v2.qcow2", "big-clusters.qcow2", "base.qcow2", "loop.qcow2"]
)


@pytest.mark.slow
@SETTINGS
@given(
    template_names,
    st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 7)), min_size=1, max_size=12),
)
def test_bit_flips_in_real_headers(name: str, flips: list[tuple[int, int]]) -> None:
    """Bit flips anywhere in the first 4 KiB (the header, extensions and backing name)."""
    blob = bytearray(templates()[name])
    for offset, bit in flips:
        if offset < len(blob):
            blob[offset] ^= 1 << bit
    check(bytes(blob))


@pytest.mark.slow
@SETTINGS
@given(template_names, st.integers(0, 5000))
def test_truncated_images(name: str, length: int) -> None:
    """Files cut short anywhere in or after the header."""
    check(templates()[name][:length])


boundary = st.sampled_from(
    [
        0,
        1,
        2,
        3,
        8,
        9,
        21,
        22,
        63,
        64,
        72,
        104,
        112,
        255,
        1023,
        1024,
        4095,
        4096,
        65535,
        65536,
        2**31 - 1,
        2**31,
        2**32 - 1,
    ]
)


@pytest.mark.slow
@SETTINGS
@given(
    template_names,
    st.lists(
        st.tuples(st.sampled_from(FIELDS), st.one_of(boundary, st.integers(0, 2**64 - 1))),
        min_size=1,
        max_size=4,
    ),
)
def test_absurd_header_fields(name: str, writes: list[tuple[tuple[int, int], int]]) -> None:
    """Version, backing-name offset and length, cluster bits, sizes, header length: any value."""
    blob = bytearray(templates()[name])
    for (offset, width), value in writes:
        value &= (1 << (8 * width)) - 1
        blob[offset : offset + width] = value.to_bytes(width, "big")
    check(bytes(blob))


@pytest.mark.slow
@SETTINGS
@given(
    template_names,
    st.one_of(st.sampled_from(NAMES), st.text(max_size=60)),
    st.integers(-8, 8),
    st.sampled_from(["qcow2", "raw", "vmdk", "", "QCOW2", "x" * 40]),
)
def test_hostile_backing_names_loops_and_self_reference(
    name: str, backing: str, size_error: int, backing_format: str
) -> None:
    """A new backing name and format written into a real header, with a wrong length too."""
    blob = bytearray(templates()[name])
    encoded = backing.encode("utf-8")
    offset = 1024  # inside the header cluster and past the extensions
    blob[offset : offset + len(encoded)] = encoded
    struct.pack_into(">QI", blob, 8, offset, max(0, len(encoded) + size_error) & 0xFFFFFFFF)
    # Replace the backing-format extension's payload when the template has one.
    index = bytes(blob[:1024]).find(b"\xe2\x79\x2a\xca")
    if index >= 0:
        length = struct.unpack_from(">I", blob, index + 4)[0]
        payload = backing_format.encode()[:length].ljust(length, b"\0")
        blob[index + 8 : index + 8 + length] = payload
    check(bytes(blob))


@pytest.mark.slow
def test_three_hundred_layer_chain_and_loops(tmp_path: Path) -> None:
    """A 300-layer chain reads and plans; a two-image loop and a self-reference are refused."""
    previous = "l000.qcow2"
    qemu_img_create(tmp_path, previous)
    for index in range(1, 300):
        name = f"l{index:03}.qcow2"
        qemu_img_create(tmp_path, name, *on(previous))
        previous = name
    top = tmp_path / previous
    with watchdog(HANG_SECONDS):
        graph = ImageGraph(walk_headers(str(top)))
        assert len(graph.chain(str(top))) == 300
        plan = make_plan(graph, CommitRequest(image=str(top), top=str(tmp_path / "l150.qcow2")))
        assert len(plan.merged) == 150
    for a, b in (("a.qcow2", "b.qcow2"), ("self.qcow2", "self.qcow2")):
        qemu_img_create(tmp_path, a)
        qemu_img_create(tmp_path, b)
        for image, backing in ((a, b), (b, a)):
            run(["qemu-img", "rebase", "-q", *on(backing), image], cwd=tmp_path)
        with watchdog(HANG_SECONDS), pytest.raises(BackchainError, match="loops"):
            walk_headers(str(tmp_path / a))
    cli = subprocess.run(
        [sys.executable, "-m", "backchain", "chain", "--json", str(top)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "Traceback" not in cli.stderr
    looped = subprocess.run(
        [sys.executable, "-m", "backchain", "plan", str(tmp_path / "a.qcow2")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert looped.returncode == 2 and "loops" in looped.stderr and "Traceback" not in looped.stderr
    record("6. hostile images", True)


@pytest.mark.slow
def test_cli_on_a_sample_of_hostile_images_never_prints_a_traceback(tmp_path: Path) -> None:
    """The CLI as a subprocess, on 24 random mutations: exit 0, 1 or 2, with no traceback."""
    rng = random.Random(6)
    names = sorted(templates())
    for index in range(24):
        blob = bytearray(templates()[rng.choice(names)])
        for _ in range(rng.randint(1, 6)):
            offset = rng.randrange(0, min(len(blob), 1100))
            blob[offset] ^= 1 << rng.randrange(8)
        directory, image = materialise(bytes(blob[: rng.choice([len(blob), rng.randrange(4096)])]))
        command = ["chain", "plan"][index % 2]
        try:
            result = subprocess.run(
                [sys.executable, "-m", "backchain", command, str(image)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=dict(os.environ, BACKCHAIN_DEBUG=""),
            )
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        assert result.returncode in (0, 1, 2), result.stderr
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        record("6. hostile images", True)
