"""Builds the demo tree with qemu-img and qemu-io: a four-layer chain, a sibling and a branch."""

from __future__ import annotations

import os
import tempfile

from backchain.engines import process as qemu_img

MiB = 1 << 20
QEMU_IO = os.environ.get("BACKCHAIN_QEMU_IO", "qemu-io")


def _create(directory: str, name: str, backing: str | None, size: str = "256M") -> str:
    argv = [qemu_img.qemu_img_binary(), "create", "-q", "-f", "qcow2"]
    if backing is not None:
        argv += ["-b", backing, "-F", "qcow2", name]
    else:
        argv += [name, size]
    qemu_img.run(argv, cwd=directory)
    return os.path.join(directory, name)


def _write(path: str, pattern: int, offset_mib: int, length_mib: int) -> None:
    command = f"write -P {pattern} {offset_mib * MiB} {length_mib * MiB}"
    qemu_img.run([QEMU_IO, "-f", "qcow2", "-c", command, path])


def make_demo(directory: str | None = None) -> str:
    """Create the demo images in ``directory`` (a new temporary one by default).

    base <- snap1 <- snap2 <- snap3 (active), plus ``other`` on base (a sibling that the
    commit puts at risk) and ``branch`` on snap1 (a branch that keeps snap1 alive).
    Returns the active image's path.
    """
    directory = directory or tempfile.mkdtemp(prefix="backchain-demo-")
    os.makedirs(directory, exist_ok=True)
    base = _create(directory, "base.qcow2", None)
    _write(base, 0x11, 0, 96)
    snap1 = _create(directory, "snap1.qcow2", "base.qcow2")
    _write(snap1, 0x22, 16, 24)
    snap2 = _create(directory, "snap2.qcow2", "snap1.qcow2")
    _write(snap2, 0x33, 32, 40)
    active = _create(directory, "active.qcow2", "snap2.qcow2")
    _write(active, 0x44, 80, 8)
    other = _create(directory, "other.qcow2", "base.qcow2")
    _write(other, 0x55, 36, 4)
    branch = _create(directory, "branch.qcow2", "snap1.qcow2")
    _write(branch, 0x66, 48, 8)
    del snap2, other, branch
    return active
