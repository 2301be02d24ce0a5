"""The rules engines change in the planner, and the chain lookups that commit and pull share."""

from __future__ import annotations

import enum
import os.path
from collections.abc import Callable, Sequence

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest
from backchain.core.valueclass import valueclass


class WriteCheck(enum.Enum):
    """Which layers must be writable for the plan to be allowed."""

    ALL = "all"
    """Every layer the commit writes (offline: qemu-img opens them itself)."""
    BASE = "base"
    """Only base (online: QEMU reopens base read-write; it re-points overlays itself)."""
    NONE = "none"
    """The engine checks for itself (libvirt, possibly on another host)."""


def path_label(layer: Layer) -> str:
    """A layer named by its path (files on this machine)."""
    return layer.path


@valueclass(frozen=True)
class PlanRules:
    """What an engine changes about the planner's rules; the defaults are qemu-img's."""

    live: bool = False
    """The chain belongs to a running VM: committing its active layer needs the ACTIVE flag,
    and the job can pivot or keep the overlay."""
    refuse_in_use: bool = True
    """A layer locked by another process (a running QEMU) is refused (offline engines)."""
    writes: WriteCheck = WriteCheck.ALL
    check_space: bool = True
    label: Callable[[Layer], str] = path_label
    """How messages name a layer (a path, a QMP node name, libvirt's vda[N])."""
    disk: Callable[[Layer], str] | None = None
    """How messages name the disk whose active layer this is (libvirt's vda, a QMP device);
    by default, as ``label`` names the layer."""
    lookup_error: Callable[[str, str], str | None] | None = None
    """The engine's words for a top or base name not found in the chain of a disk, given the
    name and the disk's label (libvirt's ``vda[N]`` indexes), or None for the planner's own."""
    beneath: Callable[[Layer], str] | None = None
    """How "could not find image 'B' beneath 'T'" names top; by default as ``label`` does
    (libvirt names it by its source path, whatever the request named it by)."""
    pull_into_active_only: bool = False
    """A pull can only stream into the chain's active layer (libvirt's virDomainBlockPull)."""
    pull_deletes: bool = True
    """The engine can delete a pull's removed layers afterwards."""
    live_note: str = (
        "the running VM writes top during the job, and QEMU may still cache writes: bytes to "
        "copy and every figure that depends on top are lower bounds"
    )
    """Why an active commit's figures are lower bounds when the graph says nothing about how
    the active layer's allocation was read (``Layer.live_writes``)."""


OFFLINE_RULES = PlanRules()


def backing_name_for(overlay: Layer, base: Layer, *, relative: bool) -> str:
    """The backing name to write into ``overlay`` so that it points to ``base``."""
    if relative:
        return os.path.relpath(base.path, os.path.dirname(overlay.path))
    return base.path


def find_in(chain: Sequence[Layer], graph: ImageGraph, key: str) -> int | None:
    """The index in ``chain`` of the one layer ``key`` names; PlanError when it names two."""
    found = graph.matches_in(chain, key)
    if len(found) > 1:
        names = " and ".join(f"'{layer.path}'" for layer in found[:2])
        raise PlanError(f"'{key}' names two different layers of the chain, {names}; "
                        "give the full path of the one you mean")  # fmt: skip
    if not found:
        return None
    return [layer.path for layer in chain].index(found[0].path)


def check_readable_chain(chain: Sequence[Layer], label: str) -> None:
    for layer in chain:
        if layer.backing_name and layer.backing_path is None:
            raise PlanError(
                f"backing file '{layer.backing_name}' of '{layer.path}' is missing "
                f"in chain for '{label}'"
            )
        if layer.backing_name and not layer.backing_format:
            raise PlanError(
                f"'{layer.path}' in chain for '{label}' does not record the format of its "
                f"backing file '{layer.backing_name}'; refusing to guess it"
            )


def check_space(rules: PlanRules, role: str, layer: Layer, need: int) -> None:
    """The layer that grows (base of a commit, top of a pull) must fit on its file system."""
    if rules.check_space and layer.free_bytes is not None and need > layer.free_bytes:
        raise PlanError(
            f"not enough free space for {role} '{layer.path}' to grow: "
            f"{need} bytes needed, {layer.free_bytes} bytes free"
        )


def not_found(rules: PlanRules, key: str, disk: str, default: str) -> PlanError:
    """The engine's words for a name it cannot find (libvirt's vda[N]), else ``default``."""
    words = rules.lookup_error(key, disk) if rules.lookup_error else None
    return PlanError(words or default)


def resolve_top(
    graph: ImageGraph, request: CommitRequest, rules: PlanRules
) -> tuple[list[Layer], int, str]:
    """(chain, top index, the disk's label), checked in libvirt's order for commit and pull:
    the image, a block job on the chain, a readable chain, then top."""
    image = graph.find(request.image)
    if image is None:
        raise PlanError(f"could not find image '{request.image}'")
    chain = graph.chain(image.path)
    # The disk's name, as libvirt words it (vda, a QMP device).
    label = (rules.disk or rules.label)(image)
    if any(layer.block_job for layer in chain):
        raise PlanError(f"disk '{label}' already in active block job")
    check_readable_chain(chain, label)
    top_index = 0
    if request.top is not None:
        found = find_in(chain, graph, request.top)
        if found is None:
            default = f"could not find image '{request.top}' in chain for '{label}'"
            raise not_found(rules, request.top, label, default)
        top_index = found
    return chain, top_index, label
