"""Runs qemu-img: chain info, allocation maps, and steps with live -p progress and cancel."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

from backchain.core.errors import CancelledError, EngineError
from backchain.core.extents import ExtentSet

QEMU_IMG = os.environ.get("BACKCHAIN_QEMU_IMG", "qemu-img")
_PROGRESS = re.compile(r"\(\s*(\d+(?:\.\d+)?)/100%\)")


def _missing_tool(argv: Sequence[str], err: OSError) -> EngineError:
    return EngineError(
        f"{argv[0]} is not installed or cannot be run ({err.strerror or err}). "
        "Install qemu-utils (Debian/Ubuntu) or qemu-img (Fedora, Arch, openSUSE).",
        argv=argv,
    )


def run(argv: Sequence[str], *, cwd: str | None = None, timeout: float | None = None) -> str:
    """Run a command to completion; return stdout or raise EngineError with its stderr."""
    try:
        result = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as err:
        raise _missing_tool(argv, err) from err
    except subprocess.TimeoutExpired as err:
        raise EngineError(f"{argv[0]} did not answer in {timeout:.0f} s", argv=argv) from err
    if result.returncode != 0:
        raise EngineError(
            _first_line(result.stderr) or f"{argv[0]} failed",
            argv=argv,
            returncode=result.returncode,
            stderr=result.stderr,
        )
    return result.stdout


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def info_chain(path: str, fmt: str) -> list[dict[str, Any]]:
    """``qemu-img info --backing-chain --output=json -U``: one dict per layer, top first."""
    out = run([QEMU_IMG, "info", "--backing-chain", "--output=json", "-U", "-f", fmt, path])
    try:
        parsed = json.loads(out)
    except json.JSONDecodeError as err:
        raise EngineError("qemu-img info printed something that is not JSON", stderr=out) from err
    return list(parsed) if isinstance(parsed, list) else [parsed]


def layer_spec(path: str, fmt: str) -> str:
    """A ``json:`` spec that opens one layer alone, with no backing file."""
    spec: dict[str, object] = {"driver": fmt, "file": {"driver": "file", "filename": path}}
    if fmt == "qcow2":
        spec["backing"] = None
    return "json:" + json.dumps(spec)


def own_extents(path: str, fmt: str) -> ExtentSet:
    """The extents the layer defines itself (data or zero clusters), from ``qemu-img map``."""
    out = run([QEMU_IMG, "map", "--output=json", "-U", layer_spec(path, fmt)])
    return extents_from_map(json.loads(out))


def extents_from_map(entries: Sequence[dict[str, Any]]) -> ExtentSet:
    """Present depth-0 entries of ``qemu-img map --output=json`` are the layer's own allocation.

    With ``"backing": null`` an unallocated region also reads as zeros at depth 0, but it is
    not ``present``; data and zero clusters that the layer defines itself are.
    """
    ranges = []
    for entry in entries:
        if entry.get("depth", 0) != 0:
            continue
        present = entry.get("present", bool(entry.get("data")))
        if present:
            ranges.append((int(entry["start"]), int(entry["length"])))
    return ExtentSet.from_ranges(ranges)


def parse_progress(chunk: str) -> list[float]:
    """Every ``(NN.NN/100%)`` frame in a chunk of -p output, as fractions of 1."""
    return [float(match) / 100.0 for match in _PROGRESS.findall(chunk)]


class RunningCommand:
    """A qemu-img child in its own process group, so that cancelling ends it and its children."""

    def __init__(self, argv: Sequence[str], cwd: str | None = None) -> None:
        self.argv = list(argv)
        try:
            self._process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
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
