"""Checks on real images that several suites make: patterns read back, whole views as bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.images import ChainBuilder, MiB, reads, run


def chain_reads(image: Path, layers: int = 3) -> bool:
    """Every layer's pattern, as ChainBuilder wrote it, reads back through ``image``."""
    return all(reads(image, ChainBuilder.pattern(i), i * MiB, MiB) for i in range(layers))


def qemu_io(path: Path, commands: list[str]) -> None:
    """Run several qemu-io commands on the image in one process."""
    argv = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        argv += ["-c", command]
    run([*argv, str(path)])


def raw_view(image: Path, dest: Path) -> bytes:
    """The image's whole guest-visible view as raw bytes (``dest`` is scratch, removed after)."""
    run(["qemu-img", "convert", "-U", "-O", "raw", str(image), str(dest)])
    data = dest.read_bytes()
    dest.unlink()
    return data


def cli(
    *args: str, cwd: Path | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real ``backchain`` command line in a child process (stdin closed unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "backchain", *args],
        cwd=cwd, text=True, capture_output=True, check=False, timeout=timeout,
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
    )  # fmt: skip


def luks(path: Path, secret: str, backing: str | None = None) -> Path:
    """A LUKS-encrypted qcow2 image (retried: LUKS's key-stretch benchmark fails under load).

    ``secret`` is qemu-img's ``--object secret,id=sec0,file=...`` specification.
    """
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "--object", secret, "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"]  # fmt: skip
    argv += ["-b", backing, "-F", "qcow2", str(path)] if backing else [str(path), "16M"]
    result = None
    for _attempt in range(10):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return path
    raise AssertionError(result.stderr if result else "qemu-img create did not run")
