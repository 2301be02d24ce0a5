"""Start virtlogd and libvirtd as root without systemd for the tests, and stop them afterwards."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SYSTEM_URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
_DIRS = ("/var/log/libvirt/qemu", "/var/lib/libvirt", "/var/cache/libvirt", "/run/libvirt")
KNOWN_HOSTS = Path("/root/.ssh/known_hosts")
_PIDFILES = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}


@dataclass
class Daemons:
    """The daemons this session started (pids), so that only those are stopped."""

    started: dict[str, int]
    uri: str = SYSTEM_URI


def _answers(uri: str) -> bool:
    result = subprocess.run(
        ["virsh", "-c", uri, "uri"], capture_output=True, text=True, check=False, timeout=30
    )
    return result.returncode == 0


def _ensure_config() -> None:
    """qemu.conf with user/group root; Debian's default user libvirt-qemu must exist anyway."""
    for directory in _DIRS:
        os.makedirs(directory, exist_ok=True)
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "libvirt-qemu"],
            check=True,
        )  # fmt: skip
    QEMU_CONF.parent.mkdir(parents=True, exist_ok=True)
    text = QEMU_CONF.read_text() if QEMU_CONF.exists() else ""
    if not re.search(r'^user\s*=\s*"root"', text, re.M):
        text += '\nuser = "root"\n'
    if not re.search(r'^group\s*=\s*"root"', text, re.M):
        text += 'group = "root"\n'
    QEMU_CONF.write_text(text)


def _pid_of(name: str) -> int | None:
    pidfile = _PIDFILES[name]
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start() -> Daemons:
    """Start virtlogd and libvirtd unless they already answer; do the slow first probe once."""
    if os.geteuid() != 0:
        raise RuntimeError("the libvirt tests start libvirtd and need root")
    for tool in ("virtlogd", "libvirtd", "virsh"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: install packaging/apt-packages.txt")
    started: dict[str, int] = {}
    if not _answers(SYSTEM_URI):
        _ensure_config()
        for name in ("virtlogd", "libvirtd"):
            if _pid_of(name) is None:
                subprocess.run([name, "-d"], check=True)
                deadline = time.monotonic() + 20
                while (pid := _pid_of(name)) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if pid is None:
                    raise RuntimeError(f"{name} -d did not leave a pid file")
                started[name] = pid
        deadline = time.monotonic() + 60
        while not _answers(SYSTEM_URI):
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not answer on qemu:///system within 60 s")
            time.sleep(0.2)
    # The first capability call probes QEMU (about 8 s); pay for it once per session.
    subprocess.run(
        ["virsh", "-c", SYSTEM_URI, "domcapabilities", "--virttype", "qemu"],
        capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    return Daemons(started)


def stop(daemons: Daemons) -> None:
    """Stop only the daemons that start() started, libvirtd first."""
    for name in ("libvirtd", "virtlogd"):
        pid = daemons.started.get(name)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


@contextlib.contextmanager
def running() -> Iterator[Daemons]:
    """A context in which libvirtd answers on qemu:///system."""
    daemons = start()
    try:
        yield daemons
    finally:
        stop(daemons)


def domain_xml(name: str, disks: dict[str, str]) -> str:
    """A minimal domain: type='qemu', 64 MiB, no OS, one virtio qcow2 disk per entry."""
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='{dev}' bus='virtio'/></disk>"
        for dev, path in disks.items()
    )
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices>{devices}</devices></domain>"
    )


class Domains:
    """Creates transient and persistent test domains and removes every one of them at the end."""

    def __init__(self, uri: str = SYSTEM_URI) -> None:
        import libvirt

        self.uri = uri
        self.conn = libvirt.open(uri)
        self.names: list[str] = []

    def start(self, disks: dict[str, str]) -> str:
        """A running transient domain with these disks; returns its name."""
        name = f"bc-test-{os.getpid()}-{len(self.names)}-{time.monotonic_ns() % 100000}"
        self.conn.createXML(domain_xml(name, disks), 0)
        self.names.append(name)
        return name

    def define(self, disks: dict[str, str]) -> str:
        """A persistent domain, shut off; returns its name."""
        name = f"bc-test-{os.getpid()}-{len(self.names)}-{time.monotonic_ns() % 100000}"
        self.conn.defineXML(domain_xml(name, disks))
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        """Destroy and undefine every domain this object made."""
        import libvirt

        for name in self.names:
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isPersistent():
                    dom.undefine()
        self.conn.close()


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Daemons]:
    """libvirtd answering on qemu:///system for the whole session (started here if needed)."""
    with running() as daemons:
        yield daemons


@pytest.fixture
def domains(libvirtd: Daemons) -> Iterator[Domains]:
    """A factory of test domains; each is destroyed and undefined after the test."""
    made = Domains(libvirtd.uri)
    try:
        yield made
    finally:
        made.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ssh_uri(tmp_path_factory: pytest.TempPathFactory, libvirtd: Daemons) -> Iterator[str]:
    """qemu+ssh://root@127.0.0.1:PORT/system through an sshd that only this test runs."""
    work = tmp_path_factory.mktemp("sshd")
    host_key, client_key = work / "host_key", work / "client_key"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    port = _free_port()
    config = work / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    # no_verify still makes ssh record the host key: keep root's known_hosts as it was.
    saved = KNOWN_HOSTS.read_bytes() if KNOWN_HOSTS.exists() else None
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or sshd.poll() is not None:
                    raise RuntimeError("sshd did not start") from None
                time.sleep(0.1)
        yield f"qemu+ssh://root@127.0.0.1:{port}/system?keyfile={client_key}&no_verify=1"
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        if saved is None:
            KNOWN_HOSTS.unlink(missing_ok=True)
        else:
            KNOWN_HOSTS.write_bytes(saved)
