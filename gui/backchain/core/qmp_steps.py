"""The QMP commands of an online commit, as pure data."""

from __future__ import annotations

import os.path
import re
from collections.abc import Sequence

from backchain.core.graph import Layer
from backchain.core.model import CommitRequest, Rebase, Step


def job_id_for(top: Layer) -> str:
    """A stable job id, so that a second Backchain sees the first one's job.

    QEMU accepts only letters, digits, ``-``, ``.`` and ``_`` in ids, so an automatic node name
    such as ``#block271`` loses its ``#``.
    """
    name = top.node_name or os.path.basename(top.path)
    return "backchain-commit-" + (re.sub(r"[^A-Za-z0-9._-]", "", name) or "top")


def qmp_steps(
    request: CommitRequest,
    chain: Sequence[Layer],
    top: Layer,
    base: Layer,
    rebased: Sequence[Rebase],
    deleted: Sequence[str],
    active_commit: bool,
) -> tuple[Step, ...]:
    """``block-commit`` by node name, with a job id, manual finalize and dismiss."""
    device = chain[0].node_name or chain[0].path
    arguments: dict[str, object] = {
        "job-id": job_id_for(top),
        "device": device,
        "top-node": top.node_name or top.path,
        "base-node": base.node_name or base.path,
        "speed": request.rate,
        "auto-finalize": False,
        "auto-dismiss": False,
    }
    if not active_commit:
        overlay = next((r for r in rebased if r.image == chain[chain.index(top) - 1].path), None)
        if overlay is not None:
            arguments["backing-file"] = overlay.backing_name
    steps = [Step("block-commit", call={"execute": "block-commit", "arguments": arguments})]
    for path in deleted:
        steps.append(Step("delete", ("rm", "-f", "--", path), target=path))
    return tuple(steps)
