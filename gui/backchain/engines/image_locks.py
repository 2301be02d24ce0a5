"""An exclusive lock per image, so that two Backchain processes never commit into one base."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator

from backchain.core.errors import PlanError
from backchain.core.static_typing import TYPE_CHECKING
from backchain.engines.state import state_dir

if TYPE_CHECKING:
    from typing import Any


def _sha256(data: bytes) -> Any:
    """SHA-256 without loading OpenSSL (hashlib's import is 3-4 ms of every commit): CPython's
    own implementation gives the same digest; hashlib where it is missing (3.12 renamed it)."""
    try:
        module = importlib.import_module("_sha256")
    except ImportError:
        module = importlib.import_module("hashlib")
    return module.sha256(data)


def lock_path(image: str) -> str:
    """The lock file of one image, keyed by its real path (so that symlinks share it)."""
    real = os.path.realpath(image)
    key = _sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(state_dir(), "locks", key + ".lock")


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 65536, 0)
        value = json.loads(raw.decode("utf-8", "replace")) if raw else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """'Backchain process 1234 (backchain commit ...), job ID, since 10:02:03' for a lock's record.

    A lock this very process holds is called this process's own job, never "another Backchain".
    """
    pid = holder.get("pid", "?")
    job = f", job {holder['job']}" if holder.get("job") else ""
    since = holder.get("since")
    when = time.strftime(" since %H:%M:%S", time.localtime(since)) if since else ""
    if pid == os.getpid():
        # Only a window runs jobs next to its own planning, so this one is the window's.
        return f"this window's own running job{job}{when}"
    command = " ".join(str(a) for a in holder.get("argv", [])) or "unknown command"
    return f"another Backchain process {pid} ({command}){job}{when}"


def holder_of(image: str) -> dict[str, Any] | None:
    """Who holds the lock of ``image`` right now, or None when nobody does."""
    path = lock_path(image)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            # A second open file description conflicts with the holder's, even in one process.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class ImageLocks:
    """Exclusive flock()s held on the lock files of several images until release()."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._record: dict[str, Any] = {}

    def acquire(self, images: Iterable[str], purpose: str) -> None:
        """Lock every image or none; PlanError names the Backchain that holds one already."""
        record = {
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "since": time.time(),
            "purpose": purpose,
        }
        # Sorted, so that two processes asking for overlapping sets meet in the same order.
        for image in sorted({os.path.realpath(i) for i in images}):
            path = lock_path(image)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                holder = _read_holder(fd)
                os.close(fd)
                self.release()
                raise PlanError(
                    f"{image} is being changed by {describe_holder(holder)}: "
                    f"{holder.get('purpose', 'a commit')}. Wait until it ends."
                ) from err
            self._write(fd, {**record, "image": image})
            self._fds.append(fd)
        self._record = record

    @staticmethod
    def _write(fd: int, record: dict[str, Any]) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)

    def annotate(self, job_id: str) -> None:
        """Name the journal's job in every lock record, so that a refusal can cite it."""
        for fd in self._fds:
            record = _read_holder(fd)
            record["job"] = job_id
            with contextlib.suppress(OSError):
                self._write(fd, record)

    def release(self) -> None:
        """Drop every lock (the files stay: unlinking a lock file races with a new holder)."""
        while self._fds:
            fd = self._fds.pop()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


@contextlib.contextmanager
def holding(images: Iterable[str], purpose: str) -> Iterator[ImageLocks]:
    """Hold the locks of ``images`` for the duration of a with-block."""
    locks = ImageLocks()
    locks.acquire(images, purpose)
    try:
        yield locks
    finally:
        locks.release()
