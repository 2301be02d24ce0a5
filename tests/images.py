"""Test helpers: real images made with qemu-img, byte patterns written and read with qemu-io."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

MiB = 1 << 20


def run(argv: list[str], cwd: Path | str | None = None) -> str:
    """Run a command, fail the test with its output if it fails, return stdout."""
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{argv} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def create(
    path: Path,
    size: str = "64M",
    backing: str | None = None,
    backing_fmt: str = "qcow2",
    cwd: Path | None = None,
) -> Path:
    """qemu-img create a qcow2 image, optionally on a backing file named exactly as given."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        argv += ["-b", backing, "-F", backing_fmt]
    argv += [str(path), size] if backing is None else [str(path)]
    run(argv, cwd=cwd)
    return path


def write(path: Path, pattern: int, offset: int, length: int, fmt: str = "qcow2") -> None:
    """Write ``length`` bytes of ``pattern`` at ``offset`` through qemu-io."""
    run(["qemu-io", "-f", fmt, "-c", f"write -P {pattern} {offset} {length}", str(path)])


def write_zeroes(path: Path, offset: int, length: int) -> None:
    """Write zero clusters at ``offset`` through qemu-io."""
    run(["qemu-io", "-f", "qcow2", "-c", f"write -z {offset} {length}", str(path)])


def reads(path: Path, pattern: int, offset: int, length: int, fmt: str = "qcow2") -> bool:
    """Whether the image's view has ``pattern`` at ``offset`` (qemu-io read -P, shared locks)."""
    result = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", fmt, "-c", f"read -P {pattern} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "Pattern verification failed" not in result.stdout


def compare(a: Path, b: Path) -> bool:
    """qemu-img compare: whether the two images' views are identical."""
    result = subprocess.run(
        ["qemu-img", "compare", "-U", str(a), str(b)], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def check_clean(path: Path) -> bool:
    """qemu-img check reports no errors or leaks."""
    result = subprocess.run(
        ["qemu-img", "check", "-U", str(path)], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def check_not_corrupt(path: Path) -> bool:
    """qemu-img check finds no corruption; leaked clusters (exit 3) are allowed.

    A qemu-img killed mid-write may leave clusters allocated that nothing references: they
    waste space but change no byte of any view (``qemu-img check -r leaks`` reclaims them).
    """
    result = subprocess.run(
        ["qemu-img", "check", "-U", str(path)], capture_output=True, text=True, check=False
    )
    return result.returncode in (0, 3)


def chain_info(path: Path) -> list[dict[str, object]]:
    """qemu-img info --backing-chain, as parsed JSON."""
    out = run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(path)])
    return list(json.loads(out))


def backing_name(path: Path) -> str | None:
    """The backing file name exactly as written in the header."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(path)]))
    name = info.get("backing-filename")
    return str(name) if name is not None else None


def snapshot_copy(image: Path, dest: Path) -> Path:
    """A standalone copy of the image's whole view (for compare after a commit)."""
    run(["qemu-img", "convert", "-U", "-O", "qcow2", str(image), str(dest)])
    return dest


def checksums(paths: Iterable[Path]) -> dict[str, str]:
    """sha256 of every file, to prove files stayed byte-identical."""
    sums = {}
    for path in paths:
        sums[str(path)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return sums


def tree_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every regular file below ``directory``."""
    files = [Path(root) / name for root, _, names in os.walk(directory) for name in names]
    return checksums(sorted(files))


class ChainBuilder:
    """Builds the standard test chain ``base <- snap1 <- snap2 <- snap3 <- active`` and trees."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def chain(
        self, names: list[str], size: str = "64M", relative: bool = True, data: bool = True
    ) -> list[Path]:
        """Images bottom first; layer i (pattern 0x11*(i+1)) writes 1 MiB at offset i MiB.

        Every layer also writes its pattern at 32 MiB + i MiB * 2 over a 2 MiB stretch so that
        upper layers partly hide lower ones there.
        """
        paths: list[Path] = []
        for index, name in enumerate(names):
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not paths:
                create(path, size)
            else:
                below = paths[-1]
                backing = os.path.relpath(below, path.parent) if relative else str(below)
                create(path, backing=backing, cwd=path.parent)
            if data:
                write(path, self.pattern(index), index * MiB, MiB)
                write(path, self.pattern(index), 32 * MiB + index * MiB, 2 * MiB)
            paths.append(path)
        return paths

    @staticmethod
    def pattern(index: int) -> int:
        """The byte pattern of layer ``index`` (bottom is 0)."""
        return 0x11 * (index + 1) & 0xFF

    def overlay(self, name: str, backing: Path, relative: bool = True) -> Path:
        """A new overlay on ``backing``."""
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        name_written = os.path.relpath(backing, path.parent) if relative else str(backing)
        return create(path, backing=name_written, cwd=path.parent)


def backchain(
    *args: str, cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the real ``backchain`` command line in a child process."""
    import sys

    return subprocess.run(
        [sys.executable, "-m", "backchain", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip
