"""The live block graph of a running QEMU, read over QMP: nodes, devices, files and filters."""

from __future__ import annotations

import asyncio
import json
import os.path
from collections.abc import Mapping, Sequence
from typing import Any

from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph, Layer
from backchain.engines.files.scan import load_extents
from backchain.engines.qmp.live_alloc import from_the_writer
from backchain.engines.qmp.session import DEFAULT_TIMEOUT, QmpSession

__all__ = ["DEFAULT_TIMEOUT", "QmpSession", "file_path_of", "live_layers", "read_qmp_graph",
           "root_for"]  # fmt: skip

# Nodes that sit between a device and an image without being an image themselves.
_NOT_IMAGES = frozenset(
    {
        "file", "host_device", "host_cdrom", "nbd", "nfs", "iscsi", "ssh", "http", "https",
        "ftp", "ftps", "gluster", "rbd", "null-co", "null-aio", "commit_top", "mirror_top",
        "copy-on-read", "throttle", "blkdebug", "blkverify", "blklogwrites", "preallocate",
        "compress", "snapshot-access", "copy-before-write", "quorum", "replication",
    }
)  # fmt: skip

# Filters that can sit above a device's top image; block-commit's ``device`` must name the
# topmost one (iotest 040 TestCommitWithFilters), with top-node and base-node below it.
_FILTERS = frozenset(
    {
        "throttle", "copy-on-read", "blkdebug", "blkverify", "blklogwrites", "preallocate",
        "compress", "copy-before-write", "commit_top", "mirror_top",
    }
)  # fmt: skip


def file_path_of(name: str) -> str:
    """The real file behind a node's file name, including QEMU's ``json:{...}`` pseudo-names."""
    if not name.startswith("json:"):
        return name
    try:
        spec: Any = json.loads(name[len("json:") :])
    except ValueError:
        return name
    # Walk down the protocol children: {"driver": "qcow2", "file": {"driver": "file", ...}};
    # filters such as blkdebug name theirs "image".
    while isinstance(spec, dict):
        child = spec.get("file", spec.get("image"))
        if isinstance(child, str):
            return child
        if child is None:
            filename = spec.get("filename")
            return filename if isinstance(filename, str) else name
        spec = child
    return name


def _real(path: str) -> str:
    return os.path.realpath(path) if os.path.isabs(path) else path


def _device_label(block: Mapping[str, Any]) -> str:
    """The device name, or the qdev id (``vd0``) of a -device that has no drive name."""
    device = str(block.get("device") or "")
    if device:
        return device
    qdev = str(block.get("qdev") or "")
    parts = [p for p in qdev.split("/") if p]
    if len(parts) >= 3 and parts[-1] == "virtio-backend":
        return parts[-2]
    return parts[-1] if parts else ""


def _devices(blocks: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Each device's root node name -> the device's label."""
    devices: dict[str, str] = {}
    for block in blocks:
        inserted = block.get("inserted")
        if isinstance(inserted, Mapping) and inserted.get("node-name"):
            devices[str(inserted["node-name"])] = _device_label(block)
    return devices


def _filtered_roots(
    nodes: Sequence[Mapping[str, Any]], devices: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Image path -> (root filter node, device), for devices whose root is a filter.

    A filter's ``file`` is a ``json:{...}`` name whose innermost file is the image below it,
    through any further filters.
    """
    roots: dict[str, tuple[str, str]] = {}
    for node in nodes:
        name = str(node.get("node-name") or "")
        if node.get("drv") in _FILTERS and name in devices:
            below = _real(file_path_of(str(node.get("file") or "")))
            if below:
                roots[below] = (name, devices[name])
    return roots


# Filters that a running block job inserts into a chain (commit, mirror, stream, backup).
_JOB_FILTERS = frozenset({"commit_top", "mirror_top", "copy-on-read", "copy-before-write"})


def _busy_paths(
    nodes: Sequence[Mapping[str, Any]],
    jobs: Sequence[Mapping[str, Any]],
    devices: Mapping[str, str],
) -> dict[str, str]:
    """Image path -> the block job that uses it, from ``query-block-jobs`` and the job filters.

    A job's ``device`` is its id (once the device name); a job filter's ``file`` names the image
    below it. ``copy-on-read`` counts only while a job runs, as block-stream inserts one.
    """
    if not jobs:
        return {}
    ids = [str(job.get("device") or job.get("id") or "") for job in jobs]
    some_job = ids[0] if len(ids) == 1 else "a block job"
    busy: dict[str, str] = {}
    for node in nodes:
        name = str(node.get("node-name") or "")
        path = _real(file_path_of(str(node.get("file") or "")))
        device = devices.get(name)
        if name in ids:
            busy[path] = name
        elif device and device in ids:
            busy[path] = device
        elif node.get("drv") in _JOB_FILTERS and path:
            busy[path] = some_job
    return busy


def _extra(node_name: str, path: str, devices: Mapping[str, str],
           roots: Mapping[str, tuple[str, str]]) -> dict[str, str]:  # fmt: skip
    if devices.get(node_name):
        return {"device": devices[node_name]}
    if path in roots:
        root, device = roots[path]
        return {"device": device, "root": root} if device else {"root": root}
    return {}


def live_layers(
    nodes: Sequence[Mapping[str, Any]],
    blocks: Sequence[Mapping[str, Any]],
    jobs: Sequence[Mapping[str, Any]] = (),
) -> list[Layer]:
    """Layers from ``query-named-block-nodes`` and ``query-block`` answers (pure).

    Filter nodes are not layers; a filter at a device's root is recorded on the image below it
    (``extra["root"]``), since block-commit must name it as ``device``. Images that a running
    block job uses (``query-block-jobs``) carry the job in ``block_job``.
    """
    devices = _devices(blocks)
    roots = _filtered_roots(nodes, devices)
    busy = _busy_paths(nodes, jobs, devices)
    layers: dict[str, Layer] = {}
    for node in nodes:
        if node.get("drv") in _NOT_IMAGES:
            continue
        image: Mapping[str, Any] = node.get("image") or {}
        path = _real(file_path_of(str(node.get("file") or image.get("filename") or "")))
        if not path or path in layers:
            continue
        backing_image = image.get("backing-image")
        backing_path = None
        if isinstance(backing_image, Mapping):
            backing_path = _real(file_path_of(str(backing_image.get("filename") or "")))
        node_name = str(node.get("node-name") or "")
        extra = _extra(node_name, path, devices, roots)
        layers[path] = Layer(
            path=path,
            format=str(node.get("drv") or image.get("format") or ""),
            virtual_size=int(image.get("virtual-size") or 0),
            actual_size=image.get("actual-size"),
            backing_name=image.get("backing-filename"),
            backing_format=image.get("backing-filename-format"),
            backing_path=backing_path,
            cluster_size=image.get("cluster-size"),
            in_use=True,
            # Backing nodes are opened read-only; block-commit reopens base read-write, so what
            # matters is whether the file itself can be written.
            writable=not os.path.exists(path) or os.access(path, os.W_OK),
            node_name=node_name or None,
            block_job=busy.get(path),
            extra=extra,
            # QEMU holds persistent bitmaps in memory while it has the image open; the file's
            # own bitmap directory may not list them until it closes the image.
            bitmaps=tuple(
                str(b.get("name")) for b in node.get("dirty-bitmaps") or [] if b.get("persistent")
            ),
        )
    return list(layers.values())


def written_nodes(
    nodes: Sequence[Mapping[str, Any]], blocks: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """Image path -> node name, for each device's top image that QEMU opened read-write.

    Those are the layers a guest writes. A backing node given with -blockdev may be read-write
    too (``ro`` false), yet nothing writes it: only a device, through any filters, does.
    """
    devices = _devices(blocks)
    roots = _filtered_roots(nodes, devices)
    written: dict[str, str] = {}
    for node in nodes:
        name = str(node.get("node-name") or "")
        if node.get("drv") in _NOT_IMAGES or node.get("ro", True) or not name:
            continue
        image: Mapping[str, Any] = node.get("image") or {}
        path = _real(file_path_of(str(node.get("file") or image.get("filename") or "")))
        if name in devices or path in roots:
            written.setdefault(path, name)
    return written


async def read_layers(session: QmpSession) -> list[Layer]:
    """The live layers, from one connected session."""
    nodes = await session.execute("query-named-block-nodes")
    blocks = await session.execute("query-block")
    jobs = await session.execute("query-block-jobs")
    return live_layers(nodes, blocks, jobs)


def open_paths(address: str, timeout: float = DEFAULT_TIMEOUT) -> set[str]:
    """Every file QEMU has open (format and protocol nodes alike)."""

    async def read() -> set[str]:
        async with QmpSession(address, timeout) as session:
            nodes = await session.execute("query-named-block-nodes")
        return {_real(file_path_of(str(n.get("file") or ""))) for n in nodes}

    return asyncio.run(read())


def root_for(graph: ImageGraph, device: str | None = None) -> Layer:
    """The active layer of ``device`` (device name, qdev id, node name or path), or the only one."""
    if device is not None:
        found = graph.find(device)
        if found is None:
            # Nothing was sent to QEMU: a refused request (exit 2), not a failed one.
            raise PlanError(f"QEMU has no device or node named '{device}'")
        return found
    roots = [graph.layer(p) for p in graph.active_layers()]
    attached = [layer for layer in roots if "device" in layer.extra] or roots
    if len(attached) != 1:
        names = ", ".join(
            layer.extra.get("device") or layer.node_name or layer.path for layer in attached
        )
        raise PlanError(f"QEMU has several chains ({names}); choose one with --device")
    return attached[0]


def read_qmp_graph(
    address: str,
    device: str | None = None,
    extents: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> ImageGraph:
    """The live block graph (runs in the calling thread, with its own event loop).

    With ``device``, only that device's chain is returned. Allocation extents come from the files'
    own maps, read with shared locks, so that online plans count bytes as offline ones do; a
    layer QEMU writes is then read from QEMU itself, which counts the writes it still caches.
    """

    async def read() -> ImageGraph:
        async with QmpSession(address, timeout) as session:
            nodes = await session.execute("query-named-block-nodes")
            blocks = await session.execute("query-block")
            jobs = await session.execute("query-block-jobs")
            graph = ImageGraph(live_layers(nodes, blocks, jobs))
            if device is not None:
                root = root_for(graph, device)
                graph = ImageGraph(graph.chain(root.path))
            if not extents:
                return graph
            files = [p for p in graph.paths if os.path.isabs(p) and os.path.exists(p)]
            graph = load_extents(graph, files)
            return await from_the_writer(session, graph, written_nodes(nodes, blocks))

    return asyncio.run(read())
