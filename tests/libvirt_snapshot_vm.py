"""A test domain on IDE disks with libvirt snapshots made by virsh, and a byte pattern for each."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.images import MiB, create, reads, run, write
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

URI = "qemu:///system"
DISKS = ("hda", "hdb")
DEVICES = {"hda": "ide0-0-0", "hdb": "ide0-0-1"}
PATTERNS = {"hda": 0x10, "hdb": 0x20}


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``virsh -c qemu:///system ARGS``; fails the test unless ``check`` is False."""
    result = subprocess.run(
        ["virsh", "-c", URI, *args], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {result.stderr}")
    return result


def virsh_error(result: subprocess.CompletedProcess[str]) -> str:
    """libvirt's own message from a failed virsh: its last ``error:`` line."""
    lines = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    return lines[-1].removeprefix("error: ") if lines else result.stderr


def domain_xml(name: str, disks: dict[str, Path]) -> str:
    """64 MiB, no OS, one IDE qcow2 disk per entry (HMP qemu-io writes work on IDE only)."""
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='{dev}' bus='ide'/></disk>"
        for dev, path in disks.items()
    )
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices>{devices}</devices></domain>"
    )


@dataclass
class SnapVM:
    """A running or shut-off domain whose disks get pattern ``k`` before snapshot ``sk``."""

    name: str
    directory: Path
    disks: tuple[str, ...]
    running: bool
    written: int = 0
    snapshots: list[str] = field(default_factory=list)

    def source(self, disk: str) -> Path:
        """The disk's active layer, as libvirt's XML says."""
        root = ET.fromstring(virsh("dumpxml", self.name).stdout)
        for element in root.findall("./devices/disk"):
            target = element.find("target")
            source = element.find("source")
            if target is not None and source is not None and target.get("dev") == disk:
                return Path(source.get("file", ""))
        raise AssertionError(f"no disk {disk}")

    def chain(self, disk: str) -> list[str]:
        """The disk's chain from the image headers, active first."""
        out = run(
            ["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(self.source(disk))]
        )
        return [str(Path(entry["filename"]).resolve()) for entry in json.loads(out)]

    def write_next(self) -> None:
        """Write pattern k+1 at (k+1) MiB on every disk, through the monitor when running."""
        self.written += 1
        k = self.written
        for disk in self.disks:
            command = f"write -P {PATTERNS[disk] + k} {k * MiB} {MiB}"
            if self.running:
                # qemu-io prints to QEMU's stdout, not the monitor: only errors come back here.
                # The flush writes QEMU's qcow2 metadata out, so that qemu-io -U reads it.
                for line in (command, "flush"):
                    out = virsh(
                        "qemu-monitor-command",
                        "--hmp",
                        self.name,
                        f'qemu-io -d {DEVICES[disk]} "{line}"',
                    ).stdout
                    assert not out.strip(), out
            else:
                write(self.source(disk), PATTERNS[disk] + k, k * MiB, MiB)

    def snapshot(self, name: str) -> None:
        """virsh snapshot-create-as NAME --disk-only --atomic, with metadata."""
        virsh("snapshot-create-as", self.name, name, "--disk-only", "--atomic")
        self.snapshots.append(name)

    def view_reads(self, disk: str, k: int, pattern: int) -> bool:
        """Whether the guest's view of ``disk`` has ``pattern`` at k MiB (shared read)."""
        if self.running:
            virsh("qemu-monitor-command", "--hmp", self.name, f"qemu-io -d {DEVICES[disk]} flush")
        return reads(self.source(disk), pattern, k * MiB, MiB)

    def listed(self) -> list[str]:
        """virsh snapshot-list --name, oldest first."""
        out = virsh("snapshot-list", self.name, "--name", "--topological").stdout
        return [line for line in out.split() if line]

    def snapshot_disk(self, snap: str, disk: str) -> tuple[str, str]:
        """(created overlay, point-in-time image) of ``disk`` in ``snap``'s XML."""
        root = ET.fromstring(virsh("snapshot-dumpxml", self.name, snap).stdout)
        created = root.find(f"./disks/disk[@name='{disk}']/source")
        point = None
        for element in root.findall("./domain/devices/disk"):
            target = element.find("target")
            if target is not None and target.get("dev") == disk:
                point = element.find("source")
        assert created is not None and point is not None
        return created.get("file", ""), point.get("file", "")

    def check_consistent(self, remaining: list[str], *, one_layer_each: bool = True) -> None:
        """snapshot-list, the disk chains and every snapshot's point in time agree; data intact.

        ``one_layer_each``: the chain holds the base and one overlay per snapshot, no more.
        """
        assert self.listed() == remaining
        for disk in self.disks:
            chain = self.chain(disk)
            assert not one_layer_each or len(chain) == 1 + len(remaining), chain
            for snap in remaining:
                created, point = self.snapshot_disk(snap, disk)
                position = chain.index(created)
                assert chain[position + 1] == point, (snap, chain)
                k = int(snap.removeprefix("s"))
                # The point in time holds patterns 1..k, and nothing written after snapshot k.
                for j in range(1, k + 1):
                    assert reads(Path(point), PATTERNS[disk] + j, j * MiB, MiB), (snap, j)
                assert reads(Path(point), 0, (k + 1) * MiB, MiB), (snap, k + 1)
            for j in range(1, self.written + 1):
                assert self.view_reads(disk, j, PATTERNS[disk] + j), (disk, j)


@contextlib.contextmanager
def snap_vm(directory: Path, made: Domains, ndisks: int, running: bool) -> Iterator[SnapVM]:
    """A domain with ``ndisks`` IDE disks; its snapshots' metadata is removed at the end."""
    disks = {disk: create(directory / f"vm{disk}.qcow2") for disk in DISKS[:ndisks]}
    name = f"bc-snap-{os.getpid()}-{directory.name[-20:]}".replace("_", "-")
    if running:
        made.conn.createXML(domain_xml(name, disks), 0)
    else:
        made.conn.defineXML(domain_xml(name, disks))
    made.names.append(name)
    try:
        yield SnapVM(name, directory, tuple(disks), running)
    finally:
        # A persistent domain with snapshot metadata cannot be undefined: drop it first.
        for snap in reversed(virsh("snapshot-list", name, "--name", check=False).stdout.split()):
            virsh("snapshot-delete", name, snap, "--metadata", check=False)


@pytest.fixture
def made_vm(tmp_path: Path, domains: Domains) -> Iterator[tuple[Path, Domains]]:  # noqa: F811
    """The directory and the domain factory for snap_vm."""
    yield tmp_path, domains


def with_snapshots(vm: SnapVM, count: int) -> SnapVM:
    """Pattern k, then snapshot sk, for k = 1..count; then one more pattern into the overlay."""
    for k in range(1, count + 1):
        vm.write_next()
        vm.snapshot(f"s{k}")
    vm.write_next()
    return vm
