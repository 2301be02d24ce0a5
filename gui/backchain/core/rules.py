"""What differs between engines when a request is planned, and the helpers both planners share."""

from __future__ import annotations

import enum
import os.path
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph, Layer


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


@dataclass(frozen=True)
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
    pull_into_active_only: bool = False
    """A pull can only stream into the chain's active layer (libvirt's virDomainBlockPull)."""
    pull_deletes: bool = True
    """The engine can delete a pull's removed layers afterwards."""


OFFLINE_RULES = PlanRules()


def backing_name_for(overlay: Layer, base: Layer, *, relative: bool) -> str:
    """The backing name to write into ``overlay`` so that it points to ``base``."""
    if relative:
        return os.path.relpath(base.path, os.path.dirname(overlay.path))
    return base.path


def find_in(chain: Sequence[Layer], graph: ImageGraph, key: str) -> int | None:
    found = graph.find(key)
    if found is None:
        return None
    for index, layer in enumerate(chain):
        if layer.path == found.path:
            return index
    return None


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
