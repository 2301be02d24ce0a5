"""Fault suite setup: a scratch state directory per test, and the Reliability table at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.faults.helpers import TALLY


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journals and locks of in-process runs go to this test's own directory."""
    state = tmp_path / "state"
    monkeypatch.setenv("BACKCHAIN_STATE_DIR", str(state))
    monkeypatch.delenv("BACKCHAIN_FAULT_PAUSE", raising=False)
    return state


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
