"""A pull (block stream) request -> its plan: top receives the data of the layers it leaves.

The roles (SEMANTICS.md, "Pull"): **top** receives the data (default: the active layer);
**base** stays as top's backing file (default: none, and top becomes standalone); the layers
strictly between them leave top's chain and are not changed. Top's view is unchanged and no other
image changes, so nothing is ever at risk.
"""

from __future__ import annotations

from collections.abc import Sequence

from backchain.core.errors import PlanError
from backchain.core.exposure import expose
from backchain.core.extents import union_all
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import (
    Advice,
    Affected,
    Alternative,
    CommitPlan,
    CommitRequest,
    Operation,
    Rebase,
)
from backchain.core.rules import (
    PlanRules,
    WriteCheck,
    backing_name_for,
    check_space,
    find_in,
    not_found,
    resolve_top,
)

# Headroom for the qcow2 metadata top needs beyond the data itself (L2 and refcount blocks).
_METADATA_SHARE = 64
_METADATA_FLOOR = 1 << 20


def _resolve(
    graph: ImageGraph, request: CommitRequest, rules: PlanRules
) -> tuple[list[Layer], int, int]:
    """(chain, top index, base index); base index is len(chain) when top becomes standalone."""
    chain, top_index, label = resolve_top(graph, request, rules)
    top_label = rules.label(chain[top_index])
    if rules.pull_into_active_only and top_index != 0:
        raise PlanError(
            f"a pull streams into the active layer '{rules.label(chain[0])}' only; "
            f"'{top_label}' is not the active layer"
        )
    if top_index == len(chain) - 1:
        raise PlanError(f"top '{top_label}' in chain for '{label}' has no backing file")
    base_index = len(chain)
    if request.base is not None:
        found = find_in(chain, graph, request.base)
        if found is None or found <= top_index:
            # As virsh blockpull words it: base is looked up beneath top (an index above top
            # is one libvirt cannot find there either).
            beneath = (rules.beneath or rules.label)(chain[top_index])
            raise not_found(rules, request.base, label,
                            f"could not find image '{request.base}' beneath '{beneath}' "
                            f"in chain for '{label}'")  # fmt: skip
        base_index = found
    if base_index == top_index + 1:
        raise PlanError(
            f"nothing to pull: '{rules.label(chain[base_index])}' is already the backing "
            f"file of '{top_label}' in chain for '{label}'"
        )
    return chain, top_index, base_index


def _check_request(request: CommitRequest, rules: PlanRules, chain: Sequence[Layer],
                   top_index: int, base_index: int) -> None:  # fmt: skip
    if request.shallow:
        raise PlanError("SHALLOW is a commit option; a pull names its base with --base")
    if request.delete and not rules.pull_deletes:
        raise PlanError(
            "this engine cannot delete a pull's removed layers; pull without --delete, "
            "then delete the files that nothing uses"
        )
    if request.keep_relative and base_index < len(chain):
        # As libvirt does: every link from top down to base must be relative.
        for layer in chain[top_index:base_index]:
            if layer.backing_name and not layer.backing_is_relative:
                raise PlanError("can't keep relative backing relationship")


def _check_top(rules: PlanRules, top: Layer, deleted: Sequence[Layer], need: int) -> None:
    """Top is written (it grows), and the deleted layers are removed: both must be free."""
    if rules.writes is WriteCheck.NONE:
        # The engine's daemon writes top, but a full file system fails its job all the same.
        check_space(rules, "top", top, need)
        return
    if rules.refuse_in_use:
        for layer in [top, *deleted]:
            if layer.in_use_by:
                raise PlanError(f"{layer.path} is being changed by {layer.in_use_by}. "
                                "Wait until it ends.")  # fmt: skip
            if layer.in_use:
                raise PlanError(f"{layer.path} is in use by a running QEMU (lock held). "
                                "Stop the VM, or pull online.")  # fmt: skip
    if not top.writable:
        raise PlanError(f"'{top.path}' is not writable, so the pull cannot copy data into it")
    check_space(rules, "top", top, need)


def deletable_layers(graph: ImageGraph, top: Layer, removed: Sequence[Layer]) -> tuple[str, ...]:
    """Removed layers that no image uses once top leaves them: only top's subtree read them."""
    leaving = {layer.path for layer in removed} | {top.path} | graph.dependants(top.path)
    return tuple(layer.path for layer in removed if not (graph.dependants(layer.path) - leaving))


def pull_bytes(top: Layer, removed: Sequence[Layer]) -> int | None:
    """What the removed layers allocate below top's size that top does not hide itself."""
    if top.extents is None or any(layer.extents is None for layer in removed):
        return None
    below = union_all(layer.extents for layer in removed if layer.extents is not None)
    return below.clip(top.virtual_size).difference_size(top.extents)


def _commit_instead(graph: ImageGraph, chain: list[Layer], top_index: int,
                    base_index: int) -> Alternative:  # fmt: skip
    """The same shortening as a commit: top and the layers above the lowest removed one are
    written into it, and that layer stays on base."""
    into = base_index - 1
    exposure = expose(graph, chain, top_index, into)
    merged = {layer.path for layer in chain[top_index:into]}
    at_risk = tuple(
        Affected(path, exposure.exposed[path]) for path in sorted(set(exposure.exposed) - merged)
    )
    return Alternative(
        Operation.COMMIT, chain[top_index].path, chain[into].path, exposure.bytes_to_copy, at_risk
    )


def _notes(
    request: CommitRequest,
    graph: ImageGraph,
    top: Layer,
    removed: Sequence[Layer],
    deleted: Sequence[str],
) -> list[str]:
    notes: list[str] = []
    if request.delete:
        kept = [layer.path for layer in removed if layer.path not in deleted]
        for path in kept:
            leaving = {layer.path for layer in removed} | {top.path} | graph.dependants(top.path)
            user = sorted(graph.dependants(path) - leaving)[0]
            notes.append(f"{path} is kept: '{user}' still depends on it")
        if deleted and not request.verify:
            notes.append("--no-verify: files are deleted without comparing top's view first")
    if any(layer.found_by_scan for layer in graph):
        notes.append("other images were found by scanning their directories")
    return notes


def plan_pull(graph: ImageGraph, request: CommitRequest, rules: PlanRules) -> CommitPlan:
    """Resolve a pull against the graph and list every consequence, or raise PlanError.

    ``merged`` holds the removed layers (top's old backing chain down to, not including, base),
    ``rebased`` holds top itself with its new backing name ("" when it becomes standalone).
    """
    chain, top_index, base_index = _resolve(graph, request, rules)
    _check_request(request, rules, chain, top_index, base_index)
    top = chain[top_index]
    base = chain[base_index] if base_index < len(chain) else None
    removed = chain[top_index + 1 : base_index]
    deletable = deletable_layers(graph, top, removed)
    deleted = deletable if request.delete else ()
    copy = pull_bytes(top, removed)
    need = 0 if copy is None else copy + copy // _METADATA_SHARE + _METADATA_FLOOR
    _check_top(rules, top, [graph.layer(p) for p in deleted], need)
    name = ""
    if base is not None:
        relative = request.keep_relative or top.backing_is_relative
        name = backing_name_for(top, base, relative=relative)
    alternative = _commit_instead(graph, chain, top_index, base_index)
    advice = (Advice(top.path, top.allocated_bytes, top.virtual_size,
                     alternative.bytes_to_copy, copy),)  # fmt: skip
    return CommitPlan(
        request=request,
        engine=request.engine,
        image=chain[0].path,
        chain=tuple(layer.path for layer in chain),
        top=top.path,
        base="" if base is None else base.path,
        merged=tuple(layer.path for layer in removed),
        invalid=(),
        stale=(),
        rebased=(Rebase(top.path, "" if base is None else base.path, name),),
        at_risk=(),
        deleted=deleted,
        bytes_to_copy=copy,
        advice=advice,
        steps=(),
        active_commit=False,  # a stream never waits in ready, whichever layer top is
        notes=tuple(_notes(request, graph, top, removed, deleted)),
        operation=Operation.PULL,
        alternative=alternative,
        deletable=deletable,
        live=rules.live,
    )
