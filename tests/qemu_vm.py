"""Test helper: a real, paused qemu-system-x86_64 with a qcow2 chain on a virtio-blk device."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from qemu.qmp import QMPClient


class QemuVM:
    """One QEMU process: each layer is its own -blockdev node, the top is attached as ``vd0``.

    With ``explicit_backing`` False only the top is given; QEMU opens the backing files named in
    the headers itself, with automatic node names (``#block123``), as a VM started by hand does.
    """

    def __init__(
        self,
        layers: Sequence[Path],
        directory: Path,
        names: Sequence[str] | None = None,
        explicit_backing: bool = True,
        failing_writes: str | None = None,
        tcp_port: int | None = None,
        root_filter: str | None = None,
        protocol_nodes: bool = False,
    ) -> None:
        self.protocol_nodes = protocol_nodes
        """Give each layer's file its own -blockdev protocol node (``NAME-file``), as libvirt
        does, instead of an inline ``file.driver=file`` child."""
        self.root_filter = root_filter
        """A throttle filter node of this name above the top layer; vd0 is attached to it."""
        self.tcp_port = tcp_port
        """Listen for QMP on 127.0.0.1:PORT instead of a unix socket."""
        self.failing_writes = failing_writes
        """A node whose file fails every write with EIO (QEMU's own blkdebug fault injection)."""
        self.layers = list(layers)
        """Image files, bottom first."""
        self.names = list(names) if names else [p.stem for p in self.layers]
        self.socket = str(directory / "qmp.sock")
        self.explicit_backing = explicit_backing
        self.log = directory / "qemu.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """The command line; backing nodes are defined before the layers that use them."""
        argv = [
            "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-S", "-nodefaults",
            "-display", "none", "-m", "32", "-qmp", f"{self.qmp_listen},server=on,wait=off",
        ]  # fmt: skip
        pairs = list(zip(self.layers, self.names, strict=True))
        if not self.explicit_backing:
            pairs = pairs[-1:]
        below: str | None = None
        for path, name in pairs:
            spec = f"driver=qcow2,node-name={name},file.driver=file,file.filename={path}"
            if self.protocol_nodes:
                argv += ["-blockdev", f"driver=file,node-name={name}-file,filename={path}"]
                spec = f"driver=qcow2,node-name={name},file={name}-file"
            if name == self.failing_writes:
                spec = (
                    f"driver=qcow2,node-name={name},file.driver=blkdebug,"
                    "file.inject-error.0.event=write_aio,file.inject-error.0.errno=5,"
                    f"file.image.driver=file,file.image.filename={path}"
                )
            if below is not None:
                # The bottom layer gets no backing option: backing=null would name a node.
                spec += f",backing={below}"
            argv += ["-blockdev", spec]
            below = name
        drive = self.names[-1]
        if self.root_filter is not None:
            argv += ["-object", "throttle-group,id=tg0",
                     "-blockdev", f"driver=throttle,node-name={self.root_filter},"
                                  f"throttle-group=tg0,file={drive}"]  # fmt: skip
            drive = self.root_filter
        argv += ["-device", f"virtio-blk-pci,drive={drive},id=vd0"]
        return argv

    @property
    def qmp_listen(self) -> str:
        """QEMU's -qmp chardev address."""
        if self.tcp_port is not None:
            return f"tcp:127.0.0.1:{self.tcp_port}"
        return f"unix:{self.socket}"

    @property
    def address(self) -> str:
        """What a client connects to: the socket path, or host:port."""
        return self.socket if self.tcp_port is None else f"127.0.0.1:{self.tcp_port}"

    def _listening(self) -> bool:
        if self.tcp_port is None:
            return os.path.exists(self.socket)
        probe = socket.socket()
        try:
            return probe.connect_ex(("127.0.0.1", self.tcp_port)) == 0
        finally:
            probe.close()

    def start(self) -> None:
        """Start QEMU and wait until its QMP socket accepts connections."""
        if self.tcp_port is None and os.path.exists(self.socket):
            os.unlink(self.socket)  # left by a QEMU that was killed; the new one makes its own
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited at start:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("QEMU did not create its QMP socket within 30 s")
            time.sleep(0.05)

    def execute(self, command: str, arguments: dict[str, object] | None = None) -> object:
        """One QMP command on a fresh connection (tests only; the engine has its own client)."""

        async def call() -> object:
            client = QMPClient("test")
            target = self.socket if self.tcp_port is None else ("127.0.0.1", self.tcp_port)
            await asyncio.wait_for(client.connect(target), 10)
            try:
                return await asyncio.wait_for(client.execute(command, arguments), 10)
            finally:
                await client.disconnect()

        return asyncio.run(call())

    def kill(self) -> None:
        """SIGKILL QEMU, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP QEMU: its socket still accepts connections, but nothing answers."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Quit QEMU politely (so that images are flushed and closed), else kill it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        try:
            self.execute("quit")
            self.proc.wait(10)
        except Exception:
            self.kill()
        finally:
            if self.proc.poll() is None:
                self.kill()


@contextmanager
def running_vm(
    layers: Sequence[Path],
    directory: Path,
    names: Sequence[str] | None = None,
    explicit_backing: bool = True,
    failing_writes: str | None = None,
    tcp_port: int | None = None,
    root_filter: str | None = None,
    protocol_nodes: bool = False,
) -> Iterator[QemuVM]:
    """A started QemuVM that is always stopped afterwards, on success and on failure."""
    vm = QemuVM(layers, directory, names, explicit_backing, failing_writes, tcp_port, root_filter,
                protocol_nodes)  # fmt: skip
    try:
        vm.start()
        yield vm
    finally:
        vm.stop()
