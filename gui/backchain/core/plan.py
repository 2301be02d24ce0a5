"""CommitRequest -> CommitPlan, or PlanError: the rules of SEMANTICS.md, in one place.

The planner knows no engine: what differs between engines (a live VM's ACTIVE flag, whose locks
matter, how a layer is named) comes in as ``PlanRules``; the engine adds its steps afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from backchain.core.errors import PlanError
from backchain.core.exposure import View, expose
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import (
    Advice,
    Affected,
    Alternative,
    CommitPlan,
    CommitRequest,
    Lost,
    LostKind,
    OnReady,
    Operation,
    Rebase,
    SnapshotView,
)
from backchain.core.pull import plan_pull
from backchain.core.rules import (
    OFFLINE_RULES,
    PlanRules,
    WriteCheck,
    backing_name_for,
    check_space,
    find_in,
    not_found,
    path_label,
    resolve_top,
)
from backchain.core.valueclass import replace

__all__ = ["OFFLINE_RULES", "PlanRules", "WriteCheck", "backing_name_for", "path_label", "plan"]

# Headroom for qcow2 metadata that base needs beyond the data itself (L2 and refcount blocks).
_METADATA_SHARE = 64
_METADATA_FLOOR = 1 << 20
MAX_RATE = (1 << 63) - 1
"""The largest bandwidth in bytes per second (LLONG_MAX, as libvirt and QEMU take it)."""


def _resolve(
    graph: ImageGraph, request: CommitRequest, rules: PlanRules
) -> tuple[list[Layer], int, int, str]:
    """Resolve top and base as libvirt 9.0 does: (chain, top index, base index, chain label).

    The order of the checks is libvirt's: a block job, top, then base; the ACTIVE flag and
    SHALLOW's adjacency are checked afterwards (``_check_flags``).
    """
    chain, top_index, label = resolve_top(graph, request, rules)
    top_label = rules.label(chain[top_index])
    bottom = top_index == len(chain) - 1
    if request.base is not None:
        found = find_in(chain, graph, request.base)
        if found is None or found <= top_index:
            beneath = (rules.beneath or rules.label)(chain[top_index])
            default = (f"could not find image '{request.base}' beneath '{beneath}' "
                       f"in chain for '{label}'")  # fmt: skip
            raise not_found(rules, request.base, label, default)
        return chain, top_index, found, label
    if bottom and request.shallow:
        raise PlanError(f"top '{top_label}' in chain for '{label}' has no backing file")
    if bottom:
        raise PlanError(f"could not find base image in chain for '{label}'")
    return chain, top_index, top_index + 1 if request.shallow else len(chain) - 1, label


def _check_flags(
    request: CommitRequest,
    rules: PlanRules,
    chain: list[Layer],
    top_index: int,
    base_index: int,
    label: str,
) -> None:
    top_label = rules.label(chain[top_index])
    if rules.live:
        if top_index == 0 and not request.active:
            raise PlanError(f"commit of '{top_label}' active layer requires active flag")
        if request.active and top_index != 0:
            raise PlanError(f"active commit requested but '{top_label}' is not active")
    if request.shallow and base_index != top_index + 1:
        raise PlanError(
            f"base '{rules.label(chain[base_index])}' is not immediately below "
            f"'{top_label}' in chain for '{label}'"
        )
    if request.keep_relative and top_index > 0:
        # As libvirt does: every link from top's overlay down to base must be relative. An
        # active commit re-points no overlay in the chain, so libvirt ignores the flag there.
        for layer in chain[top_index - 1 : base_index]:
            if layer.backing_name and not layer.backing_is_relative:
                raise PlanError("can't keep relative backing relationship")


def _check_writes(rules: PlanRules, base: Layer, touched: Sequence[Layer], need: int) -> None:
    if rules.writes is WriteCheck.NONE:
        # Space is checked even where the engine's daemon owns the files (libvirt): a full
        # file system fails the job whoever writes it.
        check_space(rules, "base", base, need)
        return
    if rules.refuse_in_use:
        locked = [x for x in touched if x.in_use]
        ours = [x for x in locked if x.in_use_by]
        if ours:
            # A Backchain job's lock: name base first, the file a second job on it fights over.
            locked = sorted(ours, key=lambda x: x is not base)
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
    check_space(rules, "base", base, need)


def _check_rate(rate: int) -> None:
    if rate < 0:
        raise PlanError("the bandwidth limit cannot be negative")
    if rate > MAX_RATE:
        # libvirt's words; QEMU's speed and qemu-img's -r are signed 64-bit byte counts.
        raise PlanError(f"bandwidth must be less than {MAX_RATE}")


def _live_bound(rules: PlanRules, merged: Sequence[Layer], active: bool) -> tuple[bool, str]:
    """Whether the figures are lower bounds because a running VM writes a merged layer, and why.

    The engine says how it read a written layer (``Layer.live_writes``): from the writer itself
    while nothing writes, the figures are exact; otherwise they are lower bounds. Without that
    fact, a live active commit is a lower bound for the engine's stated reason.
    """
    facts = [layer.live_writes for layer in merged if layer.live_writes is not None]
    loose = [fact for fact in facts if not fact.exact]
    if loose:
        return True, loose[0].reason
    if facts:
        return False, facts[0].reason
    if rules.live and active:
        return True, rules.live_note
    return False, ""


def _affected(graph: ImageGraph, path: str, view: View, lower: bool) -> Affected:
    """One image's figure: exact, a lower bound, or its whole size when allocation is unknown."""
    layer = graph.layer(path)
    snapshots = tuple(
        SnapshotView(name, count if count is not None else size, exact=count is not None and
                     not lower)
        for (name, count), size in zip(view.snapshots,
                                       (s.virtual_size for s in layer.snapshots), strict=True)
    )  # fmt: skip
    if view.bytes is None:
        return Affected(path, layer.virtual_size, exact=False, snapshots=snapshots)
    return Affected(path, view.bytes, exact=not lower, snapshots=snapshots)


def _deleted(
    graph: ImageGraph, request: CommitRequest, rules: PlanRules, merged: Sequence[Layer],
    spared: set[str], active: bool,
) -> tuple[str, ...]:  # fmt: skip
    """DELETE's files, or PlanError when something still depends on one of them."""
    if not request.delete:
        return ()
    top = merged[0]
    if rules.live and active and request.on_ready is OnReady.KEEP_OVERLAY:
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


def _lost(graph: ImageGraph, deleted: Sequence[str]) -> tuple[Lost, ...]:
    """The internal snapshots and persistent bitmaps that the deleted files take with them."""
    lost: list[Lost] = []
    for path in deleted:
        layer = graph.layer(path)
        lost += [Lost(path, LostKind.INTERNAL_SNAPSHOT, s.name) for s in layer.snapshots]
        lost += [Lost(path, LostKind.BITMAP, name) for name in layer.bitmaps]
    return tuple(lost)


def _notes(
    graph: ImageGraph, request: CommitRequest, plan: CommitPlan, lower: bool, live: str
) -> list[str]:
    notes: list[str] = []
    if plan.deleted and not request.verify:
        notes.append("--no-verify: files are deleted without comparing top's view with base")
    if any(layer.found_by_scan for layer in graph):
        notes.append("other images were found by scanning their directories")
    if live:
        notes.append(live)
    if any(not a.exact and not lower for a in (*plan.at_risk, *plan.invalid)):
        notes.append("an image whose allocation cannot be read is counted with its whole size")
    if plan.base_grows_to is not None:
        notes.append(f"base grows to top's size, {plan.base_grows_to} bytes")
    return notes


def _rebased(
    graph: ImageGraph, request: CommitRequest, top: Layer, base: Layer
) -> tuple[Rebase, ...]:
    """Top's overlays, each with the backing name that will point it to base."""
    rebased: list[Rebase] = []
    for overlay_path in graph.overlays(top.path):
        overlay = graph.layer(overlay_path)
        name = backing_name_for(
            overlay, base, relative=request.keep_relative or overlay.backing_is_relative
        )
        rebased.append(Rebase(overlay.path, base.path, name))
    return tuple(rebased)


def _space_needed(bytes_to_copy: int | None) -> int:
    """What base may grow by: the data plus headroom for its qcow2 metadata."""
    if bytes_to_copy is None:
        return 0
    return bytes_to_copy + bytes_to_copy // _METADATA_SHARE + _METADATA_FLOOR


def plan(graph: ImageGraph, request: CommitRequest, rules: PlanRules = OFFLINE_RULES) -> CommitPlan:
    """Resolve the request against the graph and list every consequence, or raise PlanError.

    The plan has no steps yet: the engine that runs it adds them (``engines/<kind>/steps.py``).
    """
    _check_rate(request.rate)
    if request.operation is Operation.PULL:
        return plan_pull(graph, request, rules)
    chain, top_index, base_index, label = _resolve(graph, request, rules)
    _check_flags(request, rules, chain, top_index, base_index, label)

    top, base = chain[top_index], chain[base_index]
    merged = chain[top_index:base_index]
    merged_paths = [layer.path for layer in merged]
    exposure = expose(graph, chain, top_index, base_index)
    # A running VM writes its active layer: what QEMU has not flushed, and what the guest
    # writes during the job, is copied too. Layers below it are read-only in QEMU.
    lower, live = _live_bound(rules, merged, top_index == 0)
    views = exposure.views
    invalid = tuple(_affected(graph, layer.path, views[layer.path], lower) for layer in merged[1:])
    at_risk = tuple(_affected(graph, path, views[path], lower)
                    for path in sorted(set(views) - set(merged_paths)))  # fmt: skip
    view_changes = tuple(_affected(graph, path, view, lower)
                         for path, view in sorted(exposure.changed_above.items()))  # fmt: skip

    rebased = _rebased(graph, request, top, base)
    spared = graph.dependants(top.path) | {top.path}
    deleted = _deleted(graph, request, rules, merged, spared, top_index == 0)
    bytes_to_copy = exposure.bytes_to_copy
    touched = [*(graph.layer(r.image) for r in rebased), *merged, base]
    _check_writes(rules, base, touched, _space_needed(bytes_to_copy))

    result = CommitPlan(
        request=request,
        engine=request.engine,
        image=chain[0].path,
        chain=tuple(layer.path for layer in chain),
        top=top.path,
        base=base.path,
        merged=tuple(merged_paths),
        invalid=invalid,
        stale=(top.path,),
        rebased=rebased,
        at_risk=at_risk,
        deleted=deleted,
        bytes_to_copy=bytes_to_copy,
        advice=tuple(
            Advice(layer.path, layer.allocated_bytes, layer.virtual_size, layer.allocated_bytes, p)
            for layer, p in zip(merged, exposure.pull_bytes, strict=True)
        ),
        steps=(),
        active_commit=top_index == 0,
        view_changes=view_changes,
        lost=_lost(graph, deleted),
        base_grows_to=top.virtual_size if top.virtual_size > base.virtual_size else None,
        bytes_to_copy_exact=bytes_to_copy is not None and not lower,
        scanned=graph.scanned,
        live=rules.live,
        alternative=_pull_instead(chain, top_index, base_index, exposure.pull_bytes[0]),
    )
    return replace(result, notes=tuple(_notes(graph, request, result, lower, live)))


def _pull_instead(
    chain: list[Layer], top_index: int, base_index: int, pull_bytes: int | None
) -> Alternative:
    """The same shortening as a pull: top receives base and the layers between, and stays on
    base's backing file (standalone when base is the bottom). Nothing is ever at risk."""
    below = chain[base_index + 1].path if base_index + 1 < len(chain) else ""
    return Alternative(Operation.PULL, chain[top_index].path, below, pull_bytes, ())
