"""engines/process: children that write die with Backchain, and qemu-img's chain reading runs
while the caller works, its failure reported when the caller asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backchain.core.errors import EngineError, ImageError
from backchain.engines import process
from backchain.engines.files.cross_check import ChainCheck
from backchain.engines.files.scan import walk_headers
from tests.images import create

GUI = Path(__file__).resolve().parents[2] / "gui"

# Starts a writer the way the engines do, prints its pid, then waits to be killed.
PARENT = """
import sys, time
from backchain.engines import process
if sys.argv[1] == "prctl":
    process._setpriv = None  # as on a host without util-linux's setpriv
command = process.RunningCommand(["sleep", "60"])
print(command.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _program(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]


def _wait(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_this_host_starts_writers_through_setpriv() -> None:
    """Debian's util-linux has setpriv with --pdeathsig: the fast start is the one CI runs."""
    argv, preexec = process.dying_with_us(["sleep", "1"])
    assert argv[:4] == [process._death_signal_wrapper(), "--pdeathsig", "KILL", "--"]
    assert argv[4].endswith("/sleep") and preexec is None


@pytest.mark.parametrize("way", ["setpriv", "prctl"])
def test_a_writer_dies_when_backchain_is_killed(way: str) -> None:
    path = os.pathsep.join([str(GUI), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, way], stdout=subprocess.PIPE,
                              text=True, env=env)  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        # Once exec'd, the child is the sleep itself (setpriv replaced itself with it).
        assert _wait(lambda: _program(child).endswith(b"/sleep"))
        parent.kill()
        parent.wait()
        assert _wait(lambda: not _alive(child)), f"{way}: sleep {child} outlived its parent"
    finally:
        if _alive(child):
            os.kill(child, 9)


def test_a_missing_tool_is_named_with_what_to_install() -> None:
    for start in (process.run, process.RunningCommand):
        with pytest.raises(EngineError) as caught:
            start(["no-such-qemu-img-here", "info"])
        assert "no-such-qemu-img-here is not installed or cannot be run" in caught.value.message
        assert "qemu-utils" in caught.value.message


def test_the_chain_check_starts_qemu_img_at_once_and_words_its_failure_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread: qemu-img starts in the constructor and is read by merged(), which raises
    what qemu-img said, naming the top image; asked twice, it says the same."""
    base = create(tmp_path / "base.qcow2", "16M")
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    started = tmp_path / "started"
    failing = tmp_path / "qemu-img"
    says = "echo 'qemu-img: the disk fell off' >&2"
    failing.write_text(f"#!/bin/sh\ntouch {started}\n{says}\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv(process.QEMU_IMG_ENV, str(failing))
    layers = walk_headers(str(top), {})
    assert [layer.path for layer in layers] == [str(top), str(base)]
    threads = threading.active_count()
    check = ChainCheck(layers)
    assert threading.active_count() == threads
    assert _wait(started.exists), "qemu-img was not started before merged()"
    for _ in range(2):
        with pytest.raises(ImageError) as caught:
            check.merged()
        assert caught.value.path == str(top)
        assert "qemu-img cannot read its chain: qemu-img: the disk fell off" in str(caught.value)
