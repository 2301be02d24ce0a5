"""Which processes have an image open: named when its lock refuses a job, and waited for when
they are only ending.

QEMU's locks are open file description locks, which the kernel reports without a pid, so the
holders are found the way fuser finds them: by the files each process has open.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence

from backchain.core.valueclass import valueclass
from backchain.engines.files.facts import lock_holder

_POLL_SECONDS = 0.05
_VM_PROGRAMS = ("qemu-system-", "qemu-kvm", "kvm")


@valueclass(frozen=True)
class Holder:
    """A process that has the file open."""

    pid: int
    argv: tuple[str, ...]
    """Its command line (empty once its main thread has exited)."""
    name: str
    """The name of the program it runs (``qemu-img``), from the command line or the kernel."""
    ending: bool
    """Its main thread has exited and the others are finishing their I/O: the kernel closes the
    files, and drops the locks, when the last thread ends (a SIGKILLed qemu-img, for a moment)."""

    @property
    def is_vm(self) -> bool:
        """Whether it is a QEMU that runs a guest (rather than qemu-img, qemu-io, qemu-nbd)."""
        return self.name.startswith(_VM_PROGRAMS)

    def describe(self) -> str:
        """``qemu-img (pid 4242)``, and that it is ending when it is."""
        return f"{self.name} (pid {self.pid}){', which is ending' if self.ending else ''}"


def _proc(pid: int, name: str) -> str:
    return f"/proc/{pid}/{name}"


def _argv(pid: int) -> tuple[str, ...]:
    try:
        with open(_proc(pid, "cmdline"), "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return ()
    return tuple(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def _name(pid: int, argv: tuple[str, ...]) -> str:
    if argv:
        return os.path.basename(argv[0])
    try:
        with open(_proc(pid, "comm"), "rb") as comm:
            return comm.read().decode("utf-8", "replace").strip() or "?"
    except OSError:
        return "?"


def _is_ending(pid: int) -> bool:
    """A zombie main thread with threads still alive (a process that ended has no threads)."""
    try:
        with open(_proc(pid, "stat"), "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        return state == b"Z" and len(os.listdir(_proc(pid, "task"))) > 1
    except (OSError, IndexError):
        return False


def _fd_dirs(pid: int, ending: bool) -> Iterator[str]:
    """Where the process's open files are listed: a zombie main thread lists none, its
    remaining threads still do."""
    yield _proc(pid, "fd")
    if ending:
        try:
            tasks = os.listdir(_proc(pid, "task"))
        except OSError:
            return
        for task in tasks:
            yield _proc(pid, f"task/{task}/fd")


def _has_open(fd_dir: str, key: tuple[int, int]) -> bool:
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        link = os.path.join(fd_dir, name)
        try:
            if not os.readlink(link).startswith("/"):
                continue  # a pipe, socket or anonymous inode
            info = os.stat(link)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == key:
            return True
    return False


def holders_of(path: str) -> list[Holder]:
    """Every other process that has ``path`` open (empty when none can be seen: another user's
    process without root, or a process in another PID namespace)."""
    try:
        info = os.stat(path)
    except OSError:
        return []
    key = (info.st_dev, info.st_ino)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        ending = _is_ending(pid)
        if any(_has_open(fd_dir, key) for fd_dir in _fd_dirs(pid, ending)):
            argv = _argv(pid)
            found.append(Holder(pid, argv, _name(pid, argv), ending))
    return found


def wait_while_locked(
    path: str, passing: Callable[[Holder], bool], seconds: float
) -> list[Holder] | None:
    """Wait, up to ``seconds``, while ``path`` is locked only by processes that will let it go
    by themselves (``passing``); None once it is free, else the holders that keep it.

    Holders that do not pass (a running VM) are returned at once: waiting would not help.
    """
    deadline = time.monotonic() + seconds
    while lock_holder(path) is not None:
        holders = holders_of(path)
        if not holders or not all(passing(h) for h in holders) or time.monotonic() > deadline:
            return holders if lock_holder(path) is not None else None
        time.sleep(_POLL_SECONDS)
    return None


def started_as(holder: Holder, commands: Sequence[Sequence[str]]) -> bool:
    """Whether the holder runs one of ``commands``: the step of a job whose Backchain died as
    it started it, before the child could ask to die with its parent.

    The program is compared by name: Backchain starts it by its path on PATH.
    """
    if not holder.argv:
        return False
    running = (holder.name, *holder.argv[1:])
    return any(running == (os.path.basename(c[0]), *c[1:]) for c in commands if c)
