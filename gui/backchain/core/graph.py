"""Layers and the image graph: chains, overlays, siblings and dependants (networkx on demand)."""

from __future__ import annotations

import itertools
import os.path
from collections.abc import Iterable, Iterator, Mapping, Sequence

from backchain.core.errors import ImageError
from backchain.core.extents import ExtentSet
from backchain.core.static_typing import TYPE_CHECKING
from backchain.core.valueclass import field, replace, valueclass

if TYPE_CHECKING:
    import networkx as nx


@valueclass(frozen=True)
class InternalSnapshot:
    """One entry of a qcow2 snapshot table: a view of its own, through the layer's backing."""

    name: str
    virtual_size: int
    extents: ExtentSet | None = None
    """What the snapshot's own L1 table allocates, or None while unknown."""


@valueclass(frozen=True)
class LiveWrites:
    """A layer that a running VM holds open read-write, and how far its allocation holds."""

    exact: bool
    """The allocation came from the writer itself, and nothing writes until the job runs."""
    reason: str
    """Why the figures that depend on the layer are exact or lower bounds, in words."""


@valueclass(frozen=True)
class NamedSnapshot:
    """A snapshot kept outside the image (a hypervisor's metadata) that gives this layer a role."""

    name: str
    role: str
    """``created`` (the overlay the snapshot made) or ``point-in-time`` (it holds its state)."""
    created: int
    """Creation time, seconds since the epoch."""


@valueclass(frozen=True)
class Layer:
    """One image file (or one QMP node) and what its header says about its backing file."""

    path: str
    """Absolute path with symlinks resolved; the layer's identity in the graph."""
    format: str
    virtual_size: int
    actual_size: int | None = None
    backing_name: str | None = None
    """The backing file name exactly as written in the header."""
    backing_format: str | None = None
    backing_path: str | None = None
    """The backing file, resolved to an absolute, symlink-free path."""
    cluster_size: int | None = None
    extents: ExtentSet | None = None
    """The layer's own allocation (data and zero clusters), or None while not yet known."""
    zeros: ExtentSet | None = None
    """The zero clusters among ``extents`` (they read as zeros), or None while unknown."""
    in_use: bool = False
    """Locked by another process (a running QEMU), so an offline commit must not touch it."""
    in_use_by: str | None = None
    """Who holds the lock when it is Backchain itself (another job), in words."""
    writable: bool = True
    free_bytes: int | None = None
    """Free space on the file system that holds the layer."""
    node_name: str | None = None
    """The QMP node name, for online graphs."""
    found_by_scan: bool = False
    encrypted: bool = False
    """The image is encrypted (qcow2 LUKS or AES): opening it needs a secret."""
    data_file: str | None = None
    """The external data file (qcow2 ``data_file=``) that holds this layer's data, if any."""
    block_job: str | None = None
    """A block job that uses this layer now (QEMU's or libvirt's): a new commit is refused."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Engine-specific labels (libvirt's ``vda[N]``, a device name)."""
    snapshots: tuple[InternalSnapshot, ...] = ()
    """The qcow2 snapshot table (each snapshot with its own allocation once known)."""
    bitmaps: tuple[str, ...] = ()
    """Names of the persistent dirty bitmaps stored in the image."""
    live_writes: LiveWrites | None = None
    """Set when a running VM writes this layer: whether its allocation is exact, and why."""
    named_by: tuple[NamedSnapshot, ...] = ()
    """Snapshots outside the image that name it (libvirt's), oldest first."""

    @property
    def name(self) -> str:
        """The file name without its directory."""
        return os.path.basename(self.path)

    @property
    def backing_is_relative(self) -> bool:
        """Whether the header names the backing file by a relative path."""
        return bool(self.backing_name) and not os.path.isabs(self.backing_name or "")

    @property
    def allocated_bytes(self) -> int | None:
        """Bytes this layer defines itself, or None while unknown."""
        return None if self.extents is None else self.extents.size


class ImageGraph:
    """Every known image, with an edge from each overlay to its backing file.

    The hot paths (chain, overlays, dependants, find) read plain dictionaries, so that a
    command that only walks a chain never imports networkx; ``nx`` builds the networkx view
    on first use, for the graph algorithms (the window's layered layout).
    """

    def __init__(self, layers: Iterable[Layer] = (), scanned: Iterable[str] = ()) -> None:
        self.scanned: tuple[str, ...] = tuple(scanned)
        """The directories searched for images on the same layers."""
        self._layers: dict[str, Layer] = {}
        for layer in layers:
            self._layers[layer.path] = layer
        self._backing: dict[str, str] = {}
        self._overlays: dict[str, list[str]] = {path: [] for path in self._layers}
        for path, layer in self._layers.items():
            backing = layer.backing_path
            if backing is not None and backing in self._layers and backing != path:
                self._backing[path] = backing
                self._overlays[backing].append(path)
            elif backing == path:
                raise ImageError(path, f"the backing chain loops back on itself "
                                       f"({layer.name} -> {layer.name})")  # fmt: skip
        self._nx: nx.DiGraph | None = None
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        """Each image has at most one backing file, so a loop is found by following them."""
        done: set[str] = set()
        for start in self._layers:
            trail: list[str] = []
            on_trail: set[str] = set()
            current: str | None = start
            while current is not None and current not in done:
                if current in on_trail:
                    loop = trail[trail.index(current) :]
                    names = " -> ".join(os.path.basename(p) for p in [*loop, current])
                    raise ImageError(current, f"the backing chain loops back on itself ({names})")
                trail.append(current)
                on_trail.add(current)
                current = self._backing.get(current)
            done.update(trail)

    @property
    def nx(self) -> nx.DiGraph:
        """The networkx graph (overlay -> backing), built on first use; do not modify it."""
        if self._nx is None:
            import networkx

            graph = networkx.DiGraph()
            graph.add_nodes_from((path, {"layer": layer}) for path, layer in self._layers.items())
            graph.add_edges_from(self._backing.items())
            self._nx = graph
        return self._nx

    def __contains__(self, path: object) -> bool:
        return path in self._layers

    def __iter__(self) -> Iterator[Layer]:
        return iter(list(self._layers.values()))

    def __len__(self) -> int:
        return len(self._layers)

    @property
    def paths(self) -> list[str]:
        """Every layer's path."""
        return list(self._layers)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Every (overlay, backing) pair of the graph."""
        return list(self._backing.items())

    def layer(self, path: str) -> Layer:
        """The layer stored under ``path``."""
        return self._layers[path]

    def find(self, key: str) -> Layer | None:
        """A layer by path, node name or engine label (``vda[2]``), or None."""
        found = self._layers.get(key)
        if found is not None:
            return found
        for layer in self._layers.values():
            if layer.node_name == key or key in layer.extra.values():
                return layer
        return None

    def matches_in(self, chain: Sequence[Layer], key: str) -> list[Layer]:
        """The layers of ``chain`` that ``key`` names: by path, node name or label, or by a
        backing name exactly as an overlay in the chain records it (as QEMU accepts it)."""
        found: dict[str, Layer] = {}
        direct = self.find(key)
        paths = {layer.path for layer in chain}
        if direct is not None and direct.path in paths:
            found[direct.path] = direct
        for above, below in itertools.pairwise(chain):
            if above.backing_name == key:
                found.setdefault(below.path, below)
        return list(found.values())

    def backing_of(self, path: str) -> str | None:
        """The backing layer's path, if it is in the graph."""
        if path not in self._layers:
            raise KeyError(path)
        return self._backing.get(path)

    def chain(self, path: str) -> list[Layer]:
        """The layers ``path`` reads through, from ``path`` itself down to the bottom."""
        result = [self._layers[path]]
        current = self._backing.get(path)
        while current is not None:
            result.append(self._layers[current])
            current = self._backing.get(current)
        return result

    def overlays(self, path: str) -> list[str]:
        """Images whose backing file is ``path``, sorted by path."""
        return sorted(self._overlays[path])

    def children(self, path: str) -> list[str]:
        """Images whose backing file is ``path``, in the order the layers were given."""
        return self._overlays[path]

    def is_active(self, path: str) -> bool:
        """Whether nothing in the graph backs onto ``path`` (a top of the tree)."""
        return not self._overlays[path]

    def dependants(self, path: str) -> set[str]:
        """Every image whose chain passes through ``path`` (not ``path`` itself)."""
        found: set[str] = set()
        pending = list(self._overlays[path])
        while pending:
            current = pending.pop()
            found.add(current)
            pending.extend(self._overlays[current])
        return found

    def active_layers(self) -> list[str]:
        """Layers that nothing else backs onto: the tops of the tree."""
        return sorted(p for p, over in self._overlays.items() if not over)

    def bottoms(self) -> list[str]:
        """Layers with no backing file in the graph."""
        return sorted(p for p in self._layers if p not in self._backing)

    def with_layers(self, layers: Iterable[Layer]) -> ImageGraph:
        """A copy in which the given layers replace (or join) those with the same path."""
        merged = dict(self._layers)
        for layer in layers:
            merged[layer.path] = layer
        return ImageGraph(merged.values(), self.scanned)

    def with_scanned(self, directories: Iterable[str]) -> ImageGraph:
        """A copy that records which directories were scanned."""
        return ImageGraph(self, [*self.scanned, *(d for d in directories if d not in self.scanned)])

    def with_extents(self, extents: Mapping[str, ExtentSet]) -> ImageGraph:
        """A copy with allocation extents filled in for the given paths."""
        return self.with_layers(
            replace(self.layer(path), extents=ext, zeros=None)
            for path, ext in extents.items()
            if path in self
        )
