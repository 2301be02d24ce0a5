"""Human wording first, with the fix; the engine's or planner's own text goes to Details."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping

from backchain.core.model import CommitPlan, StepKind
from backchain.engines.ledger import Mark

PLAUSIBLE_VERSION = 16
"""qcow2 header versions 2 and 3 exist; a small larger one may be a newer QEMU's, but a number
beyond this means the header is not qcow2 at all."""

_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"base '(?P<base>[^']*)' is not immediately below '(?P<top>[^']*)'"),
        "with SHALLOW, base must be the layer just below top: pick {top_name}'s backing file, "
        "or turn SHALLOW off",
    ),
    (
        re.compile(r"could not find image '(?P<base>[^']*)' beneath '(?P<top>[^']*)'"),
        "base must be below top: pick a lower layer as base, or a higher one as top",
    ),
    (
        re.compile(r"top '(?P<top>[^']*)' in chain for '[^']*' has no backing file"),
        "{top_name} is the bottom of its chain, so there is nothing to commit it into: "
        "pick a higher layer as top",
    ),
    (
        re.compile(r"'(?P<top>[^']*)' is not writable, so the commit cannot change it"),
        "{top_name} is not writable, so the commit cannot change it: make it writable, "
        "or pick other layers",
    ),
    (
        re.compile(r"cannot delete '(?P<top>[^']*)': '(?P<base>[^']*)' still depends on it"),
        "{top_name} cannot be deleted: {base_name} still depends on it. Turn DELETE off, "
        "or commit that branch first",
    ),
]

_VERSION = re.compile(r"^(?P<path>.*): has an unsupported qcow2 version (?P<version>\d+)$")
_NO_SOCKET = re.compile(r"cannot connect to QEMU at (?P<address>.+?): \[Errno (?:2|111|61)\][^\n]*")


def humane_plan_error(text: str) -> tuple[str, str]:
    """A planner refusal as (words for the user, the planner's own text for Details)."""
    for pattern, template in _RULES:
        found = pattern.search(text)
        if found is not None:
            names = {
                f"{key}_name": os.path.basename(value) for key, value in found.groupdict().items()
            }
            return template.format(**names), text
    return text, ""


def humane_error(summary: str) -> tuple[str, str]:
    """A failure to open an image or reach QEMU as (words, the original for Details)."""
    found = _VERSION.match(summary)
    if found is not None and int(found["version"]) > PLAUSIBLE_VERSION:
        words = f"{found['path']}: not a valid qcow2 image (header version {found['version']})"
        return words, summary
    found = _NO_SOCKET.search(summary)
    if found is not None:
        address = found["address"]
        words = (
            f"no QEMU is listening at {address}: start the VM with "
            f"-qmp unix:{address},server=on,wait=off, or check the path"
        )
        return words, summary
    return summary, ""


def lock_refusal(summary: str, own_pid: int) -> str:
    """A lock held by this very process is this window's own job, not "another Backchain"."""
    if f"Backchain process {own_pid} (" not in summary:
        return summary
    own = re.compile(rf"(another )?Backchain process {own_pid} \(.*?\)( since \d\d:\d\d:\d\d)?")
    return own.sub("this window's own running job", summary, count=1)


def where_the_data_is(plan: CommitPlan) -> str:
    """After a successful commit: which file holds the data now, and what to use."""
    name = os.path.basename
    base, top = name(plan.base), name(plan.top)
    online = bool(plan.steps) and plan.steps[0].kind in (
        StepKind.BLOCK_COMMIT,
        StepKind.LIBVIRT_COMMIT,
    )
    if plan.rebased:
        moved = ", ".join(name(r.image) for r in plan.rebased)
        text = f"{base} now holds the data of {top}; {moved} now read through {base}."
    elif plan.active_commit and online:
        text = f"{base} now holds everything that {top} read."
    elif plan.active_commit or plan.image == plan.top:
        text = (
            f"{base} now holds everything that {top} read; point the VM at {base}, "
            f"or keep using {top} until {base} is written."
        )
    else:
        text = f"{base} now holds the data of {top}."
    if plan.deleted:
        text += " Deleted: " + ", ".join(name(p) for p in plan.deleted) + "."
    left = [name(a.image) for a in plan.invalid if a.image not in plan.deleted]
    if left:
        text += f" No longer valid on their own: {', '.join(left)}."
    return text


def already_done(plan: CommitPlan, marks: Mapping[str, Mark]) -> str:
    """When the ledger says this very commit already ran: a note saying so, else ""."""
    found = [marks.get(path) for path in plan.merged]
    if not found or any(m is None or m.base != plan.base for m in found):
        return ""
    latest = max(m.when for m in found if m is not None)
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(latest))
    base = os.path.basename(plan.base)
    return (
        f"This commit already ran on {date}: {base} holds this data. Running it again copies "
        "the same data once more."
    )
