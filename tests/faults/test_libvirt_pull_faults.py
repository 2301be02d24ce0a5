"""A shut-off libvirt domain's pull (qemu-img rebase under libvirt's offline path) killed mid-job:
SIGKILL of backchain, of its qemu-img, or both, at several points; then ``resume`` completes it,
the domain's XML and the disk's chain agree, the guest view is intact and no byte is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backchain.engines.libvirt.read import parse_disks
from tests.faults.helpers import (
    bytes_lost,
    children_of,
    journal_records,
    kill,
    kill_victim,
    record,
    wait_for,
    wait_gone,
)
from tests.images import backing_name, chain_info, checksums, compare, create, snapshot_copy, write
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

MiB = 1 << 20
URI = "qemu:///system"

POINTS: list[tuple[str, int | str]] = [("backchain", 20), ("qemu-img", 50), ("both", 80)] + [
    ("backchain", pause) for pause in ("after:pull", "before:virDomainDefineXML")
]


class DomainScene:
    """``base <- snap <- active`` as disk vda of a persistent, shut-off domain; ``other`` on base
    in the same directory; snap holds 768 MiB, so the rebase takes a while."""

    def __init__(self, root: Path, domains: Domains) -> None:  # noqa: F811
        self.dir = root / "vm"
        self.dir.mkdir(parents=True)
        self.state = root / "state"
        base = create(self.p("base.qcow2"), "2G")
        write(base, 0x11, 0, 128 * MiB)
        snap = create(self.p("snap.qcow2"), backing="base.qcow2", cwd=self.dir)
        write(snap, 0x22, 64 * MiB, 768 * MiB)
        active = create(self.p("active.qcow2"), backing="snap.qcow2", cwd=self.dir)
        write(active, 0x44, 512 * MiB, 4 * MiB)
        other = create(self.p("other.qcow2"), backing="base.qcow2", cwd=self.dir)
        write(other, 0x55, 3 * MiB, MiB)
        self.before = snapshot_copy(active, root / "active-view.qcow2")
        self.sums = checksums([base, other])
        self.domain = domains.define({"vda": str(active)})
        self.source = ["--connect", URI, "--domain", self.domain, "--disk", "vda"]

    def p(self, name: str) -> Path:
        return self.dir / name

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "BACKCHAIN_STATE_DIR": str(self.state)}
        env.pop("BACKCHAIN_FAULT_PAUSE", None)
        return {**env, **extra}

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "backchain", *args]
        return subprocess.Popen(argv, env=self.env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "backchain", *args], env=self.env(),
                              capture_output=True, text=True, timeout=180, check=False)  # fmt: skip

    def jobs(self) -> list[dict[str, object]]:
        return journal_records(self.state)

    def copied(self, percent: int) -> bool:
        jobs = self.jobs()
        if not jobs:
            return False
        job = jobs[0]
        return bool(job["done"] or float(job["fraction"]) * 100 >= percent)  # type: ignore[arg-type]

    def lost(self, scratch: Path) -> int:
        return bytes_lost(self.p("active.qcow2"), self.before, scratch)

    def xml_agrees_with_headers(self) -> bool:
        """The domain's (inactive) XML names active.qcow2 as vda's source, and every backing
        store it lists is the next file of the chain the headers give."""
        xml = subprocess.run(["virsh", "-c", URI, "dumpxml", "--inactive", self.domain],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        disk = next(d for d in parse_disks(xml) if d.target == "vda")
        listed = [os.path.realpath(item.path) for item in disk.chain]
        headers = [os.path.realpath(str(e["filename"])) for e in chain_info(self.p("active.qcow2"))]
        blklist = subprocess.run(["virsh", "-c", URI, "domblklist", self.domain, "--inactive"],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
        return (listed == headers[: len(listed)] and listed[0] == str(self.p("active.qcow2"))
                and str(self.p("active.qcow2")) in blklist)  # fmt: skip


def _not_corrupt(path: Path) -> bool:
    result = subprocess.run(["qemu-img", "check", "-U", str(path)], capture_output=True,
                            check=False)  # fmt: skip
    return result.returncode in (0, 3)  # 3: leaked clusters after a SIGKILL, harmless


@pytest.mark.slow
@pytest.mark.parametrize(("victim", "point"), POINTS, ids=[f"{v}-{p}" for v, p in POINTS])
def test_sigkill_mid_shut_off_domain_pull_then_resume_completes(
    tmp_path: Path,
    domains: Domains,  # noqa: F811
    victim: str,
    point: int | str,
) -> None:
    scene = DomainScene(tmp_path, domains)
    args = ("pull", *scene.source, "--base", "vda[3]", "--delete", "--yes")
    orphans: list[int] = []
    if isinstance(point, str):
        marker = tmp_path / "paused"
        proc = scene.start(*args, BACKCHAIN_FAULT_PAUSE=point,
                           BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
        wait_for(marker.exists, what=f"the runner to pause {point}")
        kill(proc.pid)
    else:
        proc = scene.start(*args)
        started = proc

        def copied() -> bool:
            assert started.poll() is None or scene.jobs(), started.communicate()
            return scene.copied(point)

        wait_for(copied, what=f"{point}% of the rebase")
        orphans = children_of(proc.pid)
        kill_victim(victim, proc.pid, orphans)
    _out, err = proc.communicate(timeout=60)
    for child in orphans:
        wait_gone(child)

    # Right after the kill: top is on its old chain or (once the rebase ended) the new one,
    # reads as before, and the domain's XML agrees with the headers either way.
    assert backing_name(scene.p("active.qcow2")) in ("snap.qcow2", "base.qcow2")
    assert scene.lost(tmp_path / "scratch") == 0
    assert _not_corrupt(scene.p("active.qcow2"))
    assert scene.xml_agrees_with_headers()
    assert checksums([scene.p("base.qcow2"), scene.p("other.qcow2")]) == scene.sums
    if point == "before:virDomainDefineXML":
        # Killed between the delete and the define: snap is gone, and the XML names no file
        # that is missing (a shut-off domain's XML holds only the source).
        assert not scene.p("snap.qcow2").exists()
    elif point == "after:pull" or proc.returncode != 0:
        assert scene.p("snap.qcow2").exists()  # nothing deleted before the verify ran

    jobs = scene.jobs()
    if jobs:
        assert len(jobs) == 1 and jobs[0]["plan"]["operation"] == "pull", err  # type: ignore[index]
        resumed = scene.run("resume", "--yes", str(jobs[0]["id"]))
        assert resumed.returncode == 0, resumed.stderr
    elif proc.returncode != 0:
        rerun = scene.run(*args)
        assert rerun.returncode == 0, rerun.stderr
    assert scene.jobs() == []
    assert backing_name(scene.p("active.qcow2")) == "base.qcow2"
    assert not scene.p("snap.qcow2").exists()
    assert compare(scene.p("active.qcow2"), scene.before)
    lost = scene.lost(tmp_path / "scratch2")
    assert lost == 0
    assert scene.xml_agrees_with_headers()
    assert checksums([scene.p("base.qcow2"), scene.p("other.qcow2")]) == scene.sums
    record("1c. SIGKILL during a shut-off libvirt domain's pull", True, lost)
