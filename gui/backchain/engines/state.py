"""Where Backchain keeps its state (journal, locks, ledger), and whether a recorded process runs."""

from __future__ import annotations

import os
import sys

STATE_ENV = "BACKCHAIN_STATE_DIR"


def state_dir() -> str:
    """$BACKCHAIN_STATE_DIR, else the platform's user state directory."""
    chosen = os.environ.get(STATE_ENV)
    if chosen:
        return os.path.abspath(chosen)
    fast = _xdg_state_dir()
    if fast is not None:
        return fast
    import platformdirs

    return str(platformdirs.user_state_dir("backchain"))


def _xdg_state_dir() -> str | None:
    """platformdirs' answer on Linux in the usual cases, without its import (6 ms a command).

    $XDG_STATE_HOME when it is absolute, else ~/.local/state with an absolute $HOME; anything
    else (a relative HOME, no HOME, another system) is left to platformdirs.
    """
    if not sys.platform.startswith("linux"):
        return None
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "backchain")
    home = os.environ.get("HOME", "")
    if os.path.isabs(home):
        return os.path.join(home, ".local", "state", "backchain")
    return None


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None.

    A pid alone can be reused by an unrelated process; the pair (pid, start time) cannot.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start_time: int | None) -> bool:
    """Whether the process that recorded (pid, start_time) still runs."""
    if pid <= 0:
        return False
    now = process_start_time(pid)
    if now is None:
        return False
    return start_time is None or now == start_time
