"""engines/files/holders: a locked image names the process that holds it, and a holder that
is only ending (or is a step the job left running) is waited for instead of refused."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backchain.core.errors import PlanError
from backchain.core.model import Step, StepKind
from backchain.engines.files import holders
from backchain.engines.files.facts import lock_holder
from backchain.engines.qemu_img import engine
from tests.faults.helpers import wait_for
from tests.images import create

# Takes a QEMU-style lock (an open file description lock at byte 100) from a second thread,
# then ends the main thread alone (the exit system call, not exit_group): the kernel's state
# of a SIGKILLed qemu-img whose I/O threads are still finishing. The lock goes when the
# remaining thread ends, on a line from stdin.
ENDING = """
import ctypes, fcntl, os, struct, sys, threading
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 100, 1, 0))
def hold():
    sys.stdin.readline()
    os._exit(0)
threading.Thread(target=hold).start()
print("locked", flush=True)
ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[os.uname().machine], 0)
"""


@contextmanager
def qemu_io_holding(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A real qemu-io with ``path`` open (and locked) until its stdin closes."""
    proc = subprocess.Popen(["qemu-io", "-f", "qcow2", str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        wait_for(lambda: lock_holder(str(path)) is not None, what=f"qemu-io to lock {path}")
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


@contextmanager
def ending_holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process whose main thread has exited while another thread keeps ``path`` locked."""
    proc = subprocess.Popen([sys.executable, "-c", ENDING, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        deadline = time.monotonic() + 30
        while not holders.holders_of(str(path)) or not holders.holders_of(str(path))[0].ending:
            assert time.monotonic() < deadline, "the main thread never ended"
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=30)


def _release_after(proc: subprocess.Popen[str], seconds: float, line: bool) -> threading.Timer:
    def release() -> None:
        assert proc.stdin is not None
        try:
            if line:
                proc.stdin.write("\n")
                proc.stdin.flush()
            else:
                proc.stdin.close()
        except BrokenPipeError:
            pass  # it ended already (the test that waited for it has failed by then)

    timer = threading.Timer(seconds, release)
    timer.start()
    return timer


def test_a_qemu_io_holding_the_image_is_named_with_its_pid(tmp_path: Path) -> None:
    image = create(tmp_path / "active.qcow2", "64M")
    with qemu_io_holding(image) as proc:
        found = holders.holders_of(str(image))
        assert [(h.pid, h.name, h.ending) for h in found] == [(proc.pid, "qemu-io", False)]
        assert found[0].argv == ("qemu-io", "-f", "qcow2", str(image))
        with pytest.raises(PlanError) as refused:
            engine.check_holders([str(image)])
    assert f"{image} is locked by qemu-io (pid {proc.pid})" in str(refused.value)
    assert "running QEMU" not in str(refused.value)
    assert holders.holders_of(str(image)) == []


def test_a_holder_that_will_not_let_go_is_refused_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qemu-io is neither ending nor a step of the job: waiting would not help."""
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 600.0)
    image = create(tmp_path / "active.qcow2", "64M")
    with qemu_io_holding(image):
        started = time.monotonic()
        with pytest.raises(PlanError, match="locked by qemu-io"):
            engine.check_holders([str(image)])
        assert time.monotonic() - started < 60  # far below the 600 s it would have waited


def test_an_ending_holder_is_waited_for(tmp_path: Path) -> None:
    image = create(tmp_path / "active.qcow2", "64M")
    with ending_holder(image) as proc:
        (found,) = holders.holders_of(str(image))
        assert (found.pid, found.ending) == (proc.pid, True)
        assert "which is ending" in found.describe()
        timer = _release_after(proc, 0.5, line=True)
        assert lock_holder(str(image)) is not None
        engine.check_holders([str(image)])  # refuses at once if it does not wait
        timer.join()
    assert lock_holder(str(image)) is None


def test_an_ending_holder_that_outlasts_the_wait_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    image = create(tmp_path / "active.qcow2", "64M")
    with ending_holder(image) as proc, pytest.raises(PlanError) as refused:
        engine.check_holders([str(image)])
    message = str(refused.value)
    assert f"{image} is locked by " in message
    assert f"(pid {proc.pid}), which is ending" in message


def test_a_step_the_job_left_running_is_waited_for(tmp_path: Path) -> None:
    """The job's Backchain died as it started the step, before the child asked to die with
    it: the step runs on, and resume waits for it instead of calling it a running QEMU."""
    image = create(tmp_path / "active.qcow2", "64M")
    step = Step(StepKind.VERIFY, ("qemu-io", "-f", "qcow2", str(image)), target=str(image))
    with qemu_io_holding(image) as proc:
        timer = _release_after(proc, 0.5, line=False)
        engine.check_holders([str(image)], own_steps=[step])
        timer.join()
    with qemu_io_holding(image) as proc:
        other = Step(StepKind.VERIFY, ("qemu-io", "-f", "raw", str(image)), target=str(image))
        with pytest.raises(PlanError, match="locked by qemu-io"):
            engine.check_holders([str(image)], own_steps=[other])


def test_a_step_that_outlasts_the_wait_is_named_as_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    image = create(tmp_path / "active.qcow2", "64M")
    step = Step(StepKind.VERIFY, ("qemu-io", "-f", "qcow2", str(image)), target=str(image))
    with qemu_io_holding(image) as proc, pytest.raises(PlanError) as refused:
        engine.check_holders([str(image)], own_steps=[step])
    message = str(refused.value)
    assert f"{image} is still locked by qemu-io (pid {proc.pid})" in message
    assert "a step of this job" in message and "resume again after it" in message
