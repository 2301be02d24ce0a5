"""Runs external commands (qemu-img): to completion, or streaming -p progress, with cancel.

Every child that writes dies with Backchain (PR_SET_PDEATHSIG), so none writes on as an orphan."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence

from backchain.core.errors import CancelledError, EngineError
from backchain.core.static_typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

QEMU_IMG_ENV = "BACKCHAIN_QEMU_IMG"
_PR_SET_PDEATHSIG = 1
_DEATH_SIGNAL_OPTION = b"--pdeathsig"
_NOT_LOOKED_UP = "?"
_setpriv: str | None = _NOT_LOOKED_UP
_libc: ctypes.CDLL | None = None


def _executable(name: str, cwd: str | None = None) -> str | None:
    """Where exec would find ``name``: PATH's search, done here (shutil.which imports bz2 and
    lzma) because the child execs a wrapper first, which would report a missing tool itself."""
    if os.sep in name:
        return name if os.path.exists(os.path.join(cwd or "", name)) else None
    for directory in os.get_exec_path():
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _death_signal_wrapper() -> str | None:
    """util-linux's setpriv, if it can set the death signal (``--pdeathsig``, since 2.33).

    It sets the signal and execs the command, so the child starts as fast as any (vfork, no
    Python between fork and exec). Its own help names the option: reading the binary for that
    costs a fraction of a millisecond where asking setpriv would cost a process.
    """
    global _setpriv
    if _setpriv == _NOT_LOOKED_UP:
        found = _executable("setpriv")
        try:
            with open(found or "", "rb") as binary:
                _setpriv = found if _DEATH_SIGNAL_OPTION in binary.read() else None
        except OSError:
            _setpriv = None
    return _setpriv


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    """Without setpriv: ask the kernel to kill this child when the thread that started it ends."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The child must not outlive a parent that died before the prctl took effect.
    if os.getppid() == 1:
        os._exit(125)


def _load_libc() -> None:
    global _libc
    if _libc is None:
        import ctypes  # only without setpriv (3-4 ms of every start)

        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = None


def dying_with_us(
    argv: Sequence[str], cwd: str | None = None
) -> tuple[list[str], Callable[[], None] | None]:
    """What to start for ``argv`` so that the child dies with the thread that starts it: the
    argv (through setpriv) and the preexec function (without it); FileNotFoundError when the
    tool is missing.

    With setpriv, a parent killed in the moment between the start and setpriv's prctl leaves
    the child running to its end as an orphan; its image locks keep a re-run off the files
    until then, and resume waits for it (engines/files/holders.py knows it by its command).
    """
    program = _executable(argv[0], cwd)
    if program is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    wrapper = _death_signal_wrapper()
    if wrapper is not None:
        return [wrapper, "--pdeathsig", "KILL", "--", program, *argv[1:]], None
    _load_libc()
    return [program, *argv[1:]], _die_with_parent


_PROGRESS = re.compile(r"\(\s*(\d+(?:\.\d+)?)/100%\)")


def qemu_img_binary() -> str:
    """The qemu-img to run: $BACKCHAIN_QEMU_IMG, else the one on PATH (every step uses it)."""
    return os.environ.get(QEMU_IMG_ENV) or "qemu-img"


def _missing_tool(argv: Sequence[str], err: OSError) -> EngineError:
    return EngineError(
        f"{argv[0]} is not installed or cannot be run ({err.strerror or err}). "
        "Install qemu-utils (Debian/Ubuntu) or qemu-img (Fedora, Arch, openSUSE).",
        argv=argv,
    )


def run(argv: Sequence[str], *, cwd: str | None = None, timeout: float | None = None) -> str:
    """Run a command to completion; return stdout or raise EngineError with its stderr."""
    try:
        started, preexec = dying_with_us(argv, cwd)
        result = subprocess.run(
            started, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
            preexec_fn=preexec,
        )  # fmt: skip
    except FileNotFoundError as err:
        raise _missing_tool(argv, err) from err
    except subprocess.TimeoutExpired as err:
        raise EngineError(f"{argv[0]} did not answer in {timeout:.0f} s", argv=argv) from err
    return _checked(argv, result.returncode, result.stdout, result.stderr)


def _checked(argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> str:
    if returncode != 0:
        raise EngineError(
            _first_line(stderr) or f"{argv[0]} failed",
            argv=argv,
            returncode=returncode,
            stderr=stderr,
        )
    return stdout


class ReadingCommand:
    """A read-only command started now and read when its output is wanted (by output()).

    No thread reads it meanwhile: such a thread needs the GIL back after each read, and a busy
    interpreter hands it over only every 5 ms, which made a 6 ms ``qemu-img info`` take 20 ms.
    The output waits in the pipe (qemu-img pauses if it fills). The child only reads, so it
    needs no death signal: if Backchain dies first, it ends at its next write to the pipe.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        try:
            self._process = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        except FileNotFoundError as err:
            raise _missing_tool(self.argv, err) from err

    def output(self) -> str:
        """Its stdout, once it exited; EngineError with its stderr when it failed."""
        stdout, stderr = self._process.communicate()
        return _checked(self.argv, self._process.returncode, stdout, stderr)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def parse_progress(chunk: str) -> list[float]:
    """Every ``(NN.NN/100%)`` frame in a chunk of -p output, as fractions of 1."""
    return [float(match) / 100.0 for match in _PROGRESS.findall(chunk)]


class RunningCommand:
    """A child in its own process group (cancel ends it and its children) that dies with us.

    The process group keeps a terminal's Ctrl-C away from qemu-img, so that Backchain decides how
    the job ends; PR_SET_PDEATHSIG makes sure it ends when Backchain does, however Backchain dies.
    """

    def __init__(self, argv: Sequence[str], cwd: str | None = None) -> None:
        self.argv = list(argv)
        try:
            started, preexec = dying_with_us(self.argv, cwd)
            self._process = subprocess.Popen(
                started,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except FileNotFoundError as err:
            raise _missing_tool(self.argv, err) from err
        self._stderr: list[bytes] = []
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    @property
    def pid(self) -> int:
        """The child's process id (and process group id)."""
        return self._process.pid

    def _drain_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := os.read(stream.fileno(), 4096):
            self._stderr.append(chunk)

    def stream(self, on_fraction: Callable[[float], None], on_text: Callable[[str], None]) -> None:
        """Read stdout until the child closes it, reporting each progress frame."""
        stream = self._process.stdout
        assert stream is not None
        pending = ""
        while True:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            pending += chunk.decode("utf-8", "replace")
            *frames, pending = re.split(r"[\r\n]", pending)
            for frame in frames:
                values = parse_progress(frame)
                if values:
                    on_fraction(values[-1])
                elif frame.strip():
                    on_text(frame.strip())
        if pending.strip():
            on_text(pending.strip())

    def terminate(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL if it lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self._process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self._process.wait(timeout=3)
                return
            except subprocess.TimeoutExpired:
                continue

    def wait(self) -> tuple[int, str]:
        """Wait for the child; return its exit status and stderr."""
        code = self._process.wait()
        self._stderr_reader.join(timeout=5)
        return code, b"".join(self._stderr).decode("utf-8", "replace")


def run_streaming(
    argv: Sequence[str],
    *,
    cwd: str | None,
    on_fraction: Callable[[float], None],
    on_text: Callable[[str], None],
    cancelled: Callable[[], bool],
) -> None:
    """Run a step, streaming progress; raise CancelledError or EngineError."""
    command = RunningCommand(argv, cwd)
    stop_watch = threading.Event()

    def watch_cancel() -> None:
        while not stop_watch.wait(0.05):
            if cancelled():
                command.terminate()
                return

    watcher = threading.Thread(target=watch_cancel, daemon=True)
    watcher.start()
    try:
        command.stream(on_fraction, on_text)
        code, stderr = command.wait()
    finally:
        stop_watch.set()
        watcher.join(timeout=1)
    if cancelled():
        raise CancelledError("cancelled", argv=argv, returncode=code, stderr=stderr)
    if code != 0:
        raise EngineError(
            _first_line(stderr) or f"{argv[0]} failed with exit status {code}",
            argv=argv,
            returncode=code,
            stderr=stderr,
        )
