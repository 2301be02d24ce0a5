"""The ledger: which images Backchain's completed commits left invalid, stale or at risk.

A commit into base with ``-b`` leaves the chain on disk exactly as it was, so a re-read graph
cannot show what the commit did. The ledger remembers it, in STATE_DIR/ledger.json, one entry
per image. Each entry carries the file's identity (device, inode, size, mtime): once the file
changes or is replaced, the entry no longer applies and is dropped.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from collections.abc import Iterable, Mapping

from backchain.core.model import CommitPlan
from backchain.core.static_typing import TYPE_CHECKING
from backchain.core.valueclass import valueclass
from backchain.engines.state import state_dir

if TYPE_CHECKING:
    from typing import Any

LEDGER_NAME = "ledger.json"
FORMAT_VERSION = 1


class MarkKind(enum.StrEnum):
    """What a finished commit did to an image it did not write."""

    INVALID = "invalid"
    STALE = "stale"
    AT_RISK = "at_risk"


_WORDS = {MarkKind.INVALID: "invalid", MarkKind.STALE: "stale", MarkKind.AT_RISK: "at risk"}


@valueclass(frozen=True)
class Mark:
    """One image's standing after a commit that Backchain completed."""

    path: str
    kind: MarkKind
    base: str
    when: float

    @property
    def text(self) -> str:
        """``invalid since commit into base.qcow2 on 2026-12-01 19:33`` (local time)."""
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.when))
        return f"{_WORDS[self.kind]} since commit into {os.path.basename(self.base)} on {date}"


def ledger_path() -> str:
    """The ledger file."""
    return os.path.join(state_dir(), LEDGER_NAME)


def _identity(path: str) -> list[int] | None:
    """(dev, ino, size, mtime_ns) of ``path``, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _load() -> dict[str, dict[str, Any]]:
    """The entries by path; a missing or unreadable ledger is an empty one."""
    try:
        with open(ledger_path(), encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return {}
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {str(k): v for k, v in entries.items() if isinstance(v, dict)}


def _save(entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the ledger in one step, so a crash leaves the old file or the new one."""
    path = ledger_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"version": FORMAT_VERSION, "entries": entries}, handle, indent=1)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _mark_from(path: str, entry: Mapping[str, Any]) -> Mark | None:
    """The entry as a Mark, or None when the file changed, vanished or the entry is malformed."""
    try:
        kind = MarkKind(entry["kind"])
        identity = [int(v) for v in entry["identity"]]
        mark = Mark(path, kind, str(entry["base"]), float(entry["when"]))
    except (KeyError, TypeError, ValueError):
        return None
    return mark if _identity(path) == identity else None


def _affected(plan: CommitPlan) -> dict[str, MarkKind]:
    """Each image the plan left behind, with its one (most serious) kind."""
    kinds: dict[str, MarkKind] = {}
    for item in plan.at_risk:
        if item.bytes is not None and item.bytes > 0:
            kinds[item.image] = MarkKind.AT_RISK
    for path in plan.stale:
        kinds[path] = MarkKind.STALE
    for affected in plan.invalid:
        kinds[affected.image] = MarkKind.INVALID
    for path in plan.deleted:
        kinds.pop(path, None)  # gone: nothing to mark
    kinds.pop(plan.base, None)
    return kinds


def record(plan: CommitPlan, when: float | None = None) -> None:
    """After a successful commit: remember what ``plan`` invalidated, left stale or at risk."""
    moment = time.time() if when is None else when
    entries = {p: e for p, e in _load().items() if _mark_from(p, e) is not None}
    # The base was written: whatever an older commit said about it no longer holds.
    entries.pop(plan.base, None)
    for path, kind in _affected(plan).items():
        identity = _identity(path)
        if identity is None:
            continue
        entries[path] = {
            "kind": kind.value,
            "base": plan.base,
            "top": plan.top,
            "when": moment,
            "identity": identity,
        }
    _save(entries)


def marks(paths: Iterable[str]) -> dict[str, Mark]:
    """The marks that still apply to ``paths`` (read-only; changed files are left out)."""
    entries = _load()
    found: dict[str, Mark] = {}
    for path in paths:
        entry = entries.get(path)
        mark = _mark_from(path, entry) if entry is not None else None
        if mark is not None:
            found[path] = mark
    return found


def forget(path: str) -> None:
    """Drop ``path``'s entry (the user deleted or re-used the file)."""
    entries = _load()
    if entries.pop(path, None) is not None:
        _save(entries)
