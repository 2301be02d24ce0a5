"""The libvirt API calls of a commit (virDomainBlockCommit and friends), as pure data."""

from __future__ import annotations

import re
from collections.abc import Sequence

from backchain.core import plan as planner
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import (
    CommitPlan,
    CommitRequest,
    EngineKind,
    OnReady,
    Operation,
    Step,
    StepKind,
)
from backchain.core.valueclass import replace

PIVOT_FLAG = "VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT"


def libvirt_label(layer: Layer) -> str:
    """libvirt names layers by index (vda[2]) where it can."""
    return layer.extra.get("label") or layer.path


def disk_label(layer: Layer) -> str:
    """libvirt names a chain by its disk's target (vda)."""
    return layer.extra.get("disk") or libvirt_label(layer)


_INDEX = re.compile(r"(?P<disk>[^\[\]]+)\[(?P<index>[0-9]+)\]")


def index_error(key: str, disk: str) -> str | None:
    """libvirt 9.0's words for a ``vda[N]`` index that is not in (or below top in) the chain."""
    match = _INDEX.fullmatch(key)
    if match is None:
        return None
    if match["disk"] != disk:
        return f"requested target '{match['disk']}' does not match target '{disk}'"
    return f"could not find backing store index '{match['index']}' in chain for '{disk}'"


RULES = planner.PlanRules(
    live=True,
    refuse_in_use=False,
    writes=planner.WriteCheck.NONE,
    label=libvirt_label,
    disk=disk_label,
    lookup_error=index_error,
    beneath=planner.path_label,
    pull_into_active_only=True,
    pull_deletes=False,
    # Asking QEMU itself (an NBD export of the node) needs virDomainQemuMonitorCommand, which
    # taints the domain; so the active layer is read from disk.
    live_note=(
        "libvirt cannot ask QEMU for the active layer's allocation without tainting the domain, "
        "so it was read from disk: QEMU may still cache writes, and the guest writes during "
        "the job; bytes to copy and every figure that depends on top are lower bounds"
    ),
)
"""The planner's rules for a running domain: libvirt opens the images, and it writes them."""


def commit_flags(request: CommitRequest, deleted: Sequence[str], active_commit: bool) -> list[str]:
    """The virDomainBlockCommit flags the plan implies; speeds are always in bytes."""
    flags = ["VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES"]
    if request.shallow:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_SHALLOW")
    if deleted:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_DELETE")
    if active_commit:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_ACTIVE")
    if request.keep_relative:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_RELATIVE")
    return flags


def commit_steps(plan: CommitPlan, graph: ImageGraph) -> tuple[Step, ...]:
    """``virDomainBlockCommit``, and for an active commit the ``virDomainBlockJobAbort`` after it.

    Layers are named by libvirt's ``vda[N]`` labels, so the call is what ``virsh`` would send.
    """
    request = plan.request
    chain_top = graph.layer(plan.chain[0])
    top, base = graph.layer(plan.top), graph.layer(plan.base)
    disk = chain_top.extra.get("disk", chain_top.extra.get("label", chain_top.path))
    call = {
        "call": "virDomainBlockCommit",
        "disk": disk,
        "base": base.extra.get("label", base.path),
        "top": top.extra.get("label", top.path),
        "bandwidth": request.rate,
        "flags": commit_flags(request, plan.deleted, plan.active_commit),
    }
    steps = [Step(StepKind.LIBVIRT_COMMIT, call=call, target=base.path)]
    if plan.active_commit:
        # With PIVOT base becomes the active layer; without it top stays active (keep overlay).
        abort: dict[str, object] = {"call": "virDomainBlockJobAbort", "disk": disk}
        if request.on_ready is OnReady.ASK:
            abort["flags"] = "asked when the job is ready: " + PIVOT_FLAG + " to pivot, 0 to keep"
        else:
            abort["flags"] = [PIVOT_FLAG] if request.on_ready is OnReady.PIVOT else []
        steps.append(Step(StepKind.LIBVIRT_ABORT, call=abort, target=top.path))
    return tuple(steps)


def pull_steps(plan: CommitPlan, graph: ImageGraph) -> tuple[Step, ...]:
    """``virDomainBlockRebase`` into the disk's active layer (what ``virsh blockpull`` sends);
    base None pulls the whole chain, so that the active layer becomes standalone."""
    chain_top = graph.layer(plan.chain[0])
    disk = chain_top.extra.get("disk", chain_top.extra.get("label", chain_top.path))
    flags = ["VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES"]
    if plan.request.keep_relative and plan.base:
        flags.append("VIR_DOMAIN_BLOCK_REBASE_RELATIVE")
    base = graph.layer(plan.base).extra.get("label", plan.base) if plan.base else None
    call = {"call": "virDomainBlockRebase", "disk": disk, "base": base,
            "bandwidth": plan.request.rate, "flags": flags}  # fmt: skip
    return (Step(StepKind.LIBVIRT_REBASE, call=call, target=plan.top),)


def shut_off_pull_plan(offline: CommitPlan, domain: str, disk: str, fmt: str) -> CommitPlan:
    """A shut-off domain's pull: state check, qemu-img's steps, then virDomainDefineXML, because
    the disk's chain changed (its old backingStore elements would name removed layers)."""
    check = Step(
        StepKind.LIBVIRT_STATE,
        call={"call": "virDomainGetState", "domain": domain, "expect": "shut off"},
    )
    define = {"call": "virDomainDefineXML", "domain": domain, "disk": disk,
              "source": offline.image, "format": fmt}  # fmt: skip
    steps = [
        check,
        *offline.steps,
        Step(StepKind.LIBVIRT_DEFINE, call=define, target=offline.image),
    ]
    notes = [*offline.notes, f"domain '{domain}' is shut off: pulled offline with qemu-img, then "
             f"disk {disk}'s chain is read again from the images"]  # fmt: skip
    return replace(offline, engine=EngineKind.LIBVIRT, steps=tuple(steps), notes=tuple(notes))


def shut_off_plan(
    offline: CommitPlan, domain: str, disk: str, repoint: bool, base_format: str
) -> CommitPlan:
    """Wrap a qemu-img plan for a shut-off domain: state check first, disk re-point last.

    Re-pointing (virDomainDefineXML with the disk's source set to base) is the offline
    equivalent of a pivot, so it is only offered when top was the disk's active layer.
    """
    if offline.operation is Operation.PULL:
        return shut_off_pull_plan(offline, domain, disk, base_format)
    check = Step(
        StepKind.LIBVIRT_STATE,
        call={"call": "virDomainGetState", "domain": domain, "expect": "shut off"},
    )
    steps = [check, *offline.steps]
    notes = list(offline.notes)
    if repoint and offline.active_commit:
        define = {
            "call": "virDomainDefineXML",
            "domain": domain,
            "disk": disk,
            "source": offline.base,
            "format": base_format,
        }
        steps.append(Step(StepKind.LIBVIRT_DEFINE, call=define, target=offline.base))
        notes.append(f"the domain's disk {disk} will use {offline.base} from now on")
    elif offline.active_commit:
        notes.append(
            f"the domain's disk {disk} still uses {offline.top}, which becomes stale if "
            f"{offline.base} is written; add --repoint to switch the disk to base"
        )
    notes.append(f"domain '{domain}' is shut off: committed offline with qemu-img")
    return replace(offline, engine=EngineKind.LIBVIRT, steps=tuple(steps), notes=tuple(notes))


def offline_part(plan: CommitPlan) -> CommitPlan:
    """The qemu-img steps of a shut-off domain's plan, as a plan the offline runner accepts."""
    steps = tuple(step for step in plan.steps if step.argv)
    return replace(plan, engine=EngineKind.QEMU_IMG, steps=steps)
