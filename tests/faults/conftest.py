"""Fault suite setup: a scratch state directory per test, and the Reliability table at the end."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import TALLY, tmpfs


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journals and locks of in-process runs go to this test's own directory."""
    state = tmp_path / "state"
    monkeypatch.setenv("BACKCHAIN_STATE_DIR", str(state))
    monkeypatch.delenv("BACKCHAIN_FAULT_PAUSE", raising=False)
    return state


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs for the file that grows (top of a pull, base of a commit)."""
    with tmpfs(tmp_path / "small", "24m") as mount:
        yield mount


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the Reliability table (and write it as JSON when BACKCHAIN_FAULT_REPORT is set)."""
    if not TALLY:
        return
    write = terminalreporter.write_line
    write("")
    write("Reliability (tests/faults): fault class | cases run | survived | bytes lost")
    write("|---|---:|---:|---:|")
    for name in sorted(TALLY):
        run, survived, lost = TALLY[name]
        write(f"| {name} | {run} | {survived} | {lost} |")
    target = os.environ.get("BACKCHAIN_FAULT_REPORT")
    if target:
        Path(target).write_text(json.dumps(TALLY, indent=2))
