"""The command line ends without interpreter teardown only when that loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import create, write

GUI = Path(__file__).resolve().parents[2] / "gui"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(GUI), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    base = create(tmp_path / "base.qcow2", "16M")
    write(base, 1, 0, 1 << 20)
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(top, 2, 1 << 20, 1 << 20)
    return top


def backchain(*args: str, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backchain", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=ENV, timeout=60,
                          check=False)  # fmt: skip


def test_output_to_a_file_is_complete(chain: Path, tmp_path: Path) -> None:
    # A file is block-buffered: without the flush before the early end, it would stay empty.
    target = tmp_path / "plan.json"
    with open(target, "w", encoding="utf-8") as handle:
        result = backchain("plan", "--json", str(chain), stdout=handle)
    assert result.returncode == 0
    assert json.loads(target.read_text(encoding="utf-8"))["bytes_to_copy"] == 1 << 20


def test_exit_statuses_and_messages_survive(chain: Path) -> None:
    refused = backchain("plan", "--top", "no-such.qcow2", str(chain))
    assert refused.returncode == 2
    assert "backchain:" in refused.stderr
    done = backchain("commit", "--yes", str(chain))
    assert done.returncode == 0
    assert "Committed" in done.stdout


def test_an_atexit_function_gets_a_normal_exit(chain: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
        f"sys.argv = ['backchain', 'plan', {str(chain)!r}]\n"
        "from backchain.launch import run\n"
        "sys.exit(run())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=ENV, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0
    assert marker.exists()


CHECKS = """
import atexit, threading
from backchain import launch
alone = launch._may_end_now()
release = threading.Event()
worker = threading.Thread(target=release.wait)
worker.start()
with_thread = launch._may_end_now()
release.set()
worker.join()
atexit.register(print)
with_atexit = launch._may_end_now()

print(alone, with_thread, with_atexit)
"""


def test_a_running_thread_or_an_atexit_function_keeps_the_normal_exit() -> None:
    # In a fresh interpreter: pytest's own process has atexit functions of its own.
    result = subprocess.run([sys.executable, "-c", CHECKS], capture_output=True, text=True,
                            env=ENV, timeout=60, check=True)  # fmt: skip
    assert result.stdout.split() == ["True", "False", "False"]
