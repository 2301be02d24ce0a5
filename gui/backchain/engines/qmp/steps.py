"""The QMP commands of an online commit or pull (and their verify argv), as pure data."""

from __future__ import annotations

import os.path
import re

from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitPlan, Step, StepKind
from backchain.engines.files.views import old_view_spec
from backchain.engines.process import qemu_img_binary


def job_id_for(top: Layer) -> str:
    """A stable job id, so that a second Backchain sees the first one's job.

    QEMU accepts only letters, digits, ``-``, ``.`` and ``_`` in ids, so an automatic node name
    such as ``#block271`` loses its ``#``.
    """
    name = top.node_name or os.path.basename(top.path)
    return "backchain-commit-" + (re.sub(r"[^A-Za-z0-9._-]", "", name) or "top")


def root_device(chain_top: Layer) -> str:
    """The node ``device`` must name: a filter above the chain's top (throttle) if there is one."""
    return chain_top.extra.get("root") or chain_top.node_name or chain_top.path


def commit_steps(plan: CommitPlan, graph: ImageGraph) -> tuple[Step, ...]:
    """``block-commit`` by node name, with a job id, manual finalize and dismiss."""
    chain = [graph.layer(path) for path in plan.chain]
    top, base = graph.layer(plan.top), graph.layer(plan.base)
    arguments: dict[str, object] = {
        "job-id": job_id_for(top),
        "device": root_device(chain[0]),
        "top-node": top.node_name or top.path,
        "base-node": base.node_name or base.path,
        "speed": plan.request.rate,
        "auto-finalize": False,
        "auto-dismiss": False,
    }
    if not plan.active_commit:
        above = plan.chain[plan.chain.index(plan.top) - 1]
        overlay = next((r for r in plan.rebased if r.image == above), None)
        if overlay is not None:
            arguments["backing-file"] = overlay.backing_name
    call = {"execute": "block-commit", "arguments": arguments}
    steps = [Step(StepKind.BLOCK_COMMIT, call=call, target=base.path)]
    if plan.deleted:
        # After an active commit base stays open read-write, and the clusters the job wrote may
        # still sit in QEMU's metadata cache: until then the merged files are the only copy on
        # disk. A flush by node name also covers a base that a filter hides.
        steps.append(flush_step(base))
    if plan.deleted and plan.request.verify and not plan.active_commit:
        # Top's file is unchanged and still reads through its old chain; base must now read
        # the same. (After an active commit's pivot the VM writes base alone, so a comparison
        # with top would fail for the right reason; the mirror made them equal at the pivot.)
        verify = (qemu_img_binary(), "compare", "-U", "-p", "-f", top.format, "-F", base.format,
                  top.path, base.path)  # fmt: skip
        steps.append(Step(StepKind.VERIFY, verify, target=top.path))
    for path in plan.deleted:
        steps.append(Step(StepKind.DELETE, ("rm", "-f", "--", path), target=path))
    return tuple(steps)


def flush_step(layer: Layer) -> Step:
    """HMP's ``qemu-io NODE flush``: QMP has no flush of its own; this calls bdrv_flush."""
    node = layer.node_name or layer.path
    call = {"execute": "human-monitor-command",
            "arguments": {"command-line": f"qemu-io {node} flush"}}  # fmt: skip
    return Step(StepKind.VERIFY, call=call, target=layer.path)


def pull_steps(plan: CommitPlan, graph: ImageGraph) -> tuple[Step, ...]:
    """``block-stream`` into top's node, with base-node and backing-file when a base stays."""
    top = graph.layer(plan.top)
    name = top.node_name or os.path.basename(top.path)
    arguments: dict[str, object] = {
        "job-id": "backchain-pull-" + (re.sub(r"[^A-Za-z0-9._-]", "", name) or "top"),
        "device": top.node_name or top.path,
        "speed": plan.request.rate,
        "auto-finalize": False,
        "auto-dismiss": False,
    }
    if plan.base:
        base = graph.layer(plan.base)
        arguments["base-node"] = base.node_name or base.path
        # Without it QEMU would write a json:{...} name into top's header (see FACTS.md).
        arguments["backing-file"] = plan.rebased[0].backing_name
    call = {"execute": "block-stream", "arguments": arguments}
    steps = [Step(StepKind.BLOCK_STREAM, call=call, target=top.path)]
    if plan.deleted:
        # QEMU keeps the streamed clusters' L2 tables in its cache after the job ends (top's
        # header already names the new backing): until they are flushed, a removed layer is
        # the only copy on disk, and qemu-img reads a top that differs. QMP has no flush
        # command of its own.
        steps.append(flush_step(top))
    if plan.deleted and plan.request.verify:
        # -U: QEMU holds top (and may still hold the removed layers); both sides are only read.
        verify = (qemu_img_binary(), "compare", "-U", "-p", "-f", top.format, top.path,
                  old_view_spec(plan, graph))  # fmt: skip
        steps.append(Step(StepKind.VERIFY, verify, target=top.path))
    for path in plan.deleted:
        steps.append(Step(StepKind.DELETE, ("rm", "-f", "--", path), target=path))
    return tuple(steps)
