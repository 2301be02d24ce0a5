"""CommitRequest -> CommitPlan, or PlanError: the rules of SEMANTICS.md, in one place.

The planner knows no engine: what differs between engines (a live VM's ACTIVE flag, whose locks
matter, how a layer is named) comes in as ``PlanRules``; the engine adds its steps afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from backchain.core.errors import PlanError
from backchain.core.exposure import expose
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import (
    Advice,
    Affected,
    Alternative,
    CommitPlan,
    CommitRequest,
    OnReady,
    Operation,
    Rebase,
)
from backchain.core.pull import plan_pull
from backchain.core.rules import (
    OFFLINE_RULES,
    PlanRules,
    WriteCheck,
    backing_name_for,
    check_readable_chain,
    find_in,
    path_label,
)

__all__ = ["OFFLINE_RULES", "PlanRules", "WriteCheck", "backing_name_for", "path_label", "plan"]

# Headroom for qcow2 metadata that base needs beyond the data itself (L2 and refcount blocks).
_METADATA_SHARE = 64
_METADATA_FLOOR = 1 << 20


def _resolve(
    graph: ImageGraph, request: CommitRequest, rules: PlanRules
) -> tuple[list[Layer], int, int, str]:
    """Resolve top and base as libvirt does: (chain, top index, base index, chain label)."""
    image = graph.find(request.image)
    if image is None:
        raise PlanError(f"could not find image '{request.image}'")
    chain = graph.chain(image.path)
    label = rules.label(image)
    check_readable_chain(chain, label)

    top_index = 0
    if request.top is not None:
        found = find_in(chain, graph, request.top)
        if found is None:
            raise PlanError(f"could not find image '{request.top}' in chain for '{label}'")
        top_index = found
    top = chain[top_index]
    top_label = rules.label(top)
    if top_index == len(chain) - 1:
        raise PlanError(f"top '{top_label}' in chain for '{label}' has no backing file")

    if request.base is None:
        base_index = top_index + 1 if request.shallow else len(chain) - 1
    else:
        found = find_in(chain, graph, request.base)
        if found is None or found <= top_index:
            raise PlanError(
                f"could not find image '{request.base}' beneath '{top_label}' "
                f"in chain for '{label}'"
            )
        base_index = found
        if request.shallow and base_index != top_index + 1:
            raise PlanError(
                f"base '{rules.label(chain[base_index])}' is not immediately below "
                f"'{top_label}' in chain for '{label}'"
            )
    return chain, top_index, base_index, label


def _check_flags(
    request: CommitRequest, rules: PlanRules, chain: list[Layer], top_index: int, base_index: int
) -> None:
    top_label = rules.label(chain[top_index])
    if rules.live:
        if top_index == 0 and not request.active:
            raise PlanError(f"commit of '{top_label}' active layer requires active flag")
        if request.active and top_index != 0:
            raise PlanError(f"active commit requested but '{top_label}' is not active")
    if request.keep_relative:
        # As libvirt does: every link from top's overlay down to base must be relative.
        for layer in chain[max(top_index - 1, 0) : base_index]:
            if layer.backing_name and not layer.backing_is_relative:
                raise PlanError("can't keep relative backing relationship")


def _check_writes(rules: PlanRules, base: Layer, touched: Sequence[Layer], need: int) -> None:
    if rules.writes is WriteCheck.NONE:
        return
    if rules.refuse_in_use:
        locked = [layer for layer in touched if layer.in_use]
        if locked:
            more = f" (and {len(locked) - 1} more of its layers)" if len(locked) > 1 else ""
            holder = locked[0].in_use_by
            if holder:
                raise PlanError(f"{locked[0].path} is being changed by {holder}{more}. "
                                "Wait until it ends.")  # fmt: skip
            raise PlanError(
                f"{locked[0].path} is in use by a running QEMU (lock held){more}. "
                "Stop the VM, or commit online."
            )
    for layer in touched:
        if not layer.writable and (layer is base or rules.writes is WriteCheck.ALL):
            raise PlanError(f"'{layer.path}' is not writable, so the commit cannot change it")
    if rules.check_space and base.free_bytes is not None and need > base.free_bytes:
        raise PlanError(
            f"not enough free space for base '{base.path}' to grow: "
            f"{need} bytes needed, {base.free_bytes} bytes free"
        )


def plan(graph: ImageGraph, request: CommitRequest, rules: PlanRules = OFFLINE_RULES) -> CommitPlan:
    """Resolve the request against the graph and list every consequence, or raise PlanError.

    The plan has no steps yet: the engine that runs it adds them (``engines/<kind>/steps.py``).
    """
    if request.rate < 0:
        raise PlanError("the bandwidth limit cannot be negative")
    if request.operation is Operation.PULL:
        return plan_pull(graph, request, rules)
    chain, top_index, base_index, _label = _resolve(graph, request, rules)
    _check_flags(request, rules, chain, top_index, base_index)

    top, base = chain[top_index], chain[base_index]
    merged = chain[top_index:base_index]
    merged_paths = [layer.path for layer in merged]
    exposure = expose(graph, chain, top_index, base_index)
    invalid = tuple(Affected(layer.path, exposure.exposed[layer.path]) for layer in merged[1:])

    rebased = _rebased(graph, request, top, base)

    spared = graph.dependants(top.path) | {top.path}
    at_risk = [
        Affected(path, exposure.exposed[path])
        for path in sorted(set(exposure.exposed) - set(merged_paths))
    ]

    deleted = _deleted(graph, request, rules, top_index, merged, spared)

    bytes_to_copy = exposure.bytes_to_copy
    need = 0
    if bytes_to_copy is not None:
        need = bytes_to_copy + bytes_to_copy // _METADATA_SHARE + _METADATA_FLOOR
    touched = [*(graph.layer(r.image) for r in rebased), *merged, base]
    _check_writes(rules, base, touched, need)

    advice = tuple(
        Advice(layer.path, allocated, layer.virtual_size, allocated, pull)
        for layer, pull in zip(merged, exposure.pull_bytes, strict=True)
        for allocated in [layer.allocated_bytes]
    )
    notes = _notes(graph, request, deleted)
    return CommitPlan(
        request=request,
        engine=request.engine,
        image=chain[0].path,
        chain=tuple(layer.path for layer in chain),
        top=top.path,
        base=base.path,
        merged=tuple(merged_paths),
        invalid=invalid,
        stale=(top.path,),
        rebased=tuple(rebased),
        at_risk=tuple(at_risk),
        deleted=deleted,
        bytes_to_copy=bytes_to_copy,
        advice=advice,
        steps=(),
        active_commit=top_index == 0,
        notes=tuple(notes),
        alternative=_pull_instead(chain, top_index, base_index, exposure.pull_bytes[0]),
    )


def _rebased(graph: ImageGraph, request: CommitRequest, top: Layer, base: Layer) -> list[Rebase]:
    """Top's overlays, each re-pointed to base with the name written into its header."""
    rebased: list[Rebase] = []
    for overlay_path in graph.overlays(top.path):
        overlay = graph.layer(overlay_path)
        relative = request.keep_relative or overlay.backing_is_relative
        rebased.append(
            Rebase(overlay.path, base.path, backing_name_for(overlay, base, relative=relative))
        )
    return rebased


def _notes(graph: ImageGraph, request: CommitRequest, deleted: Sequence[str]) -> list[str]:
    notes: list[str] = []
    if deleted and not request.verify:
        notes.append("--no-verify: files are deleted without comparing top's view with base")
    if any(layer.found_by_scan for layer in graph):
        notes.append("other images were found by scanning their directories")
    return notes


def _deleted(graph: ImageGraph, request: CommitRequest, rules: PlanRules, top_index: int,
             merged: Sequence[Layer], spared: set[str]) -> tuple[str, ...]:  # fmt: skip
    """With DELETE: the merged layers, unless something else still depends on one of them."""
    if not request.delete:
        return ()
    top = merged[0]
    if rules.live and top_index == 0 and request.on_ready is OnReady.KEEP_OVERLAY:
        raise PlanError(
            f"cannot delete '{rules.label(top)}': it stays the active layer "
            "when the overlay is kept"
        )
    merged_paths = {layer.path for layer in merged}
    for layer in merged:
        blockers = graph.dependants(layer.path) - merged_paths - spared
        if blockers:
            raise PlanError(
                f"cannot delete '{layer.path}': '{sorted(blockers)[0]}' still depends on it"
            )
    return tuple(layer.path for layer in merged)


def _pull_instead(
    chain: list[Layer], top_index: int, base_index: int, pull_bytes: int | None
) -> Alternative:
    """The same shortening as a pull: top receives base and the layers between, and stays on
    base's backing file (standalone when base is the bottom). Nothing is ever at risk."""
    below = chain[base_index + 1].path if base_index + 1 < len(chain) else ""
    return Alternative(Operation.PULL, chain[top_index].path, below, pull_bytes, ())
