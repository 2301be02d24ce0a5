"""Facts about image files that only the file system knows: locks, writability, free space."""

from __future__ import annotations

import fcntl
import os
import struct

# QEMU takes shared byte-range locks at offsets 100+ (permissions it holds) and 200+
# (permissions it refuses to share) on every image it opens; see QEMU's file-posix.c.
_QEMU_LOCK_START = 100
_QEMU_LOCK_LENGTH = 200
_FLOCK = "hhqqi4x"


def lock_holder(path: str) -> int | None:
    """The pid holding a QEMU-style lock on ``path`` (-1 for an OFD lock), or None if free.

    F_GETLK only asks; it takes no lock, so a starting QEMU is never disturbed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _QEMU_LOCK_START,
                            _QEMU_LOCK_LENGTH, 0)  # fmt: skip
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        lock_type, _whence, _start, _length, pid = struct.unpack(_FLOCK, answer)
    except OSError:
        return None
    finally:
        os.close(fd)
    if lock_type == fcntl.F_UNLCK:
        return None
    return int(pid) if pid > 0 else -1


def is_writable(path: str) -> bool:
    """Whether Backchain should treat the file as writable.

    Root passes every permission check, so a file whose write bits were all removed on purpose,
    or that sits on a read-only mount, counts as read-only too.
    """
    try:
        info = os.stat(path)
        mount = os.statvfs(path)
    except OSError:
        return False
    if mount.f_flag & os.ST_RDONLY:
        return False
    if not info.st_mode & 0o222:
        return False
    return os.access(path, os.W_OK)


def free_bytes(path: str) -> int | None:
    """Free bytes available to this user on the file system that holds ``path``."""
    try:
        mount = os.statvfs(path)
    except OSError:
        return None
    return int(mount.f_bavail * mount.f_frsize)


def directory_writable(directory: str) -> bool:
    """Whether entries can be created or removed in ``directory``."""
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    # access() reports an immutable directory (chattr +i) even to root.
    return not read_only and os.access(directory, os.W_OK | os.X_OK)
