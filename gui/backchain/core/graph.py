"""Layers and the image graph: chains, overlays, siblings and dependants over networkx."""

from __future__ import annotations

import itertools
import os.path
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import networkx as nx

from backchain.core.errors import ImageError
from backchain.core.extents import ExtentSet


@dataclass(frozen=True)
class InternalSnapshot:
    """One entry of a qcow2 snapshot table: a view of its own, through the layer's backing."""

    name: str
    virtual_size: int
    extents: ExtentSet | None = None
    """What the snapshot's own L1 table allocates, or None while unknown."""


@dataclass(frozen=True)
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
    extra: Mapping[str, str] = field(default_factory=dict)
    """Engine-specific labels (libvirt's ``vda[N]``, a device name)."""
    snapshots: tuple[InternalSnapshot, ...] = ()
    """The qcow2 snapshot table (each snapshot with its own allocation once known)."""
    bitmaps: tuple[str, ...] = ()
    """Names of the persistent dirty bitmaps stored in the image."""

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
    """Every known image, with an edge from each overlay to its backing file."""

    def __init__(self, layers: Iterable[Layer] = (), scanned: Iterable[str] = ()) -> None:
        self.scanned: tuple[str, ...] = tuple(scanned)
        """The directories searched for images on the same layers."""
        self._graph: nx.DiGraph = nx.DiGraph()
        for layer in layers:
            self._graph.add_node(layer.path, layer=layer)
        for path in list(self._graph.nodes):
            backing = self.layer(path).backing_path
            if backing is not None and backing in self._graph:
                self._graph.add_edge(path, backing)
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        try:
            cycle = nx.find_cycle(self._graph)
        except nx.NetworkXNoCycle:
            return
        first = cycle[0][0]
        names = (
            " -> ".join(os.path.basename(a) for a, _ in cycle) + " -> " + os.path.basename(first)
        )
        raise ImageError(first, f"the backing chain loops back on itself ({names})")

    @property
    def nx(self) -> nx.DiGraph:
        """The underlying networkx graph (overlay -> backing); do not modify it."""
        return self._graph

    def __contains__(self, path: object) -> bool:
        return path in self._graph

    def __iter__(self) -> Iterator[Layer]:
        for path in self._graph.nodes:
            yield self.layer(path)

    def __len__(self) -> int:
        return int(self._graph.number_of_nodes())

    @property
    def paths(self) -> list[str]:
        """Every layer's path."""
        return list(self._graph.nodes)

    def layer(self, path: str) -> Layer:
        """The layer stored under ``path``."""
        layer: Layer = self._graph.nodes[path]["layer"]
        return layer

    def find(self, key: str) -> Layer | None:
        """A layer by path, node name or engine label (``vda[2]``), or None."""
        if key in self._graph:
            return self.layer(key)
        for layer in self:
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
        successors = list(self._graph.successors(path))
        return successors[0] if successors else None

    def chain(self, path: str) -> list[Layer]:
        """The layers ``path`` reads through, from ``path`` itself down to the bottom."""
        result: list[Layer] = []
        current: str | None = path
        while current is not None:
            result.append(self.layer(current))
            current = self.backing_of(current)
        return result

    def overlays(self, path: str) -> list[str]:
        """Images whose backing file is ``path``, sorted by path."""
        return sorted(self._graph.predecessors(path))

    def dependants(self, path: str) -> set[str]:
        """Every image whose chain passes through ``path`` (not ``path`` itself)."""
        found: set[str] = nx.ancestors(self._graph, path)
        return found

    def active_layers(self) -> list[str]:
        """Layers that nothing else backs onto: the tops of the tree."""
        return sorted(p for p in self._graph.nodes if self._graph.in_degree(p) == 0)

    def bottoms(self) -> list[str]:
        """Layers with no backing file in the graph."""
        return sorted(p for p in self._graph.nodes if self._graph.out_degree(p) == 0)

    def with_layers(self, layers: Iterable[Layer]) -> ImageGraph:
        """A copy in which the given layers replace (or join) those with the same path."""
        merged = {layer.path: layer for layer in self}
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
