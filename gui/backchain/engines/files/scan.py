"""Builds an ImageGraph from files: the chain by headers and qemu-img, siblings by header scans."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from backchain.core.errors import EngineError, ImageError
from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, InternalSnapshot, Layer
from backchain.core.valueclass import replace
from backchain.engines import image_locks
from backchain.engines.files import facts as locks
from backchain.engines.files import qcow2_alloc
from backchain.engines.files import qemu_info as qemu_img
from backchain.engines.files.cross_check import ChainCheck, merge_qemu_info
from backchain.engines.files.qcow2 import Qcow2Header, read_header, unsafe_backing_reason

SUPPORTED_BACKING_FORMATS = ("qcow2", "raw")


def resolve_backing(overlay_access_path: str, name: str) -> str:
    """Where a backing name points, exactly as QEMU resolves it.

    A plain relative name is joined to the directory of the overlay's path *as opened*, and the
    kernel then resolves ``..`` (after any symlinked directory), so no normalisation happens
    here. A ``file:`` name is a protocol filename: QEMU does not join it, so a relative one is
    relative to the current directory.
    """
    if name.startswith("file:"):
        return os.path.abspath(name[len("file:") :])
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(overlay_access_path), name)


def _check_backing(path: str, header: Qcow2Header) -> None:
    name = header.backing_name
    if name is None:
        return
    reason = unsafe_backing_reason(name)
    if reason is not None:
        raise ImageError(path, reason)
    if not header.backing_format:
        raise ImageError(
            path,
            f"does not record the format of its backing file '{name}', and Backchain never "
            f"guesses a format (record it with: qemu-img rebase -u -b '{name}' -F qcow2 ...)",
        )
    if header.backing_format not in SUPPORTED_BACKING_FORMATS:
        raise ImageError(path, f"has a backing file in format '{header.backing_format}', "
                               "which Backchain does not support")  # fmt: skip


def data_file_of(path: str, header: Qcow2Header) -> str | None:
    """The layer's external data file, or ImageError when qemu-img could open another file.

    qemu-img resolves a relative data-file name against its current directory, not against the
    image, so which file it opens depends on where it runs: such a name is refused.
    """
    name = header.data_file
    if name is None:
        return None
    reason = unsafe_backing_reason(name)
    if reason is not None:
        raise ImageError(path, reason.replace("its backing file", "its data file"))
    if not os.path.isabs(name):
        raise ImageError(path, f"names its external data file relatively ('{name}'), and "
                               "qemu-img looks for that in its current directory, not beside the "
                               "image; record an absolute name first")  # fmt: skip
    if not os.path.exists(name):
        raise ImageError(path, f"its external data file '{name}' is missing")
    return os.path.realpath(name)


def json_backing_file(name: str) -> str | None:
    """The file a ``json:{...}`` backing specification opens (its innermost filename), or None."""
    try:
        spec = json.loads(name[len("json:") :])
    except ValueError:
        return None
    while isinstance(spec, dict):
        flat = spec.get("file.filename")
        if isinstance(flat, str):
            return flat
        inner = spec.get("file")
        if isinstance(inner, str):
            return inner
        if not isinstance(inner, dict):
            found = spec.get("filename")
            return found if isinstance(found, str) else None
        spec = inner
    return None


def _backing_target(access: str, name: str) -> str | None:
    """The file a backing name opens; a json: one by its innermost filename."""
    if name.startswith("json:"):
        found = json_backing_file(name)
        return None if found is None else os.path.abspath(found)
    return resolve_backing(access, name)


def _layer_from_header(real: str, header: Qcow2Header, access: str, by_scan: bool) -> Layer:
    backing_path = None
    if header.backing_name is not None:
        target = _backing_target(access, header.backing_name)
        backing_path = None if target is None else os.path.realpath(target)
    return Layer(
        path=real,
        format="qcow2",
        virtual_size=header.virtual_size,
        actual_size=_on_disk(real),
        backing_name=header.backing_name,
        backing_format=header.backing_format,
        backing_path=backing_path,
        cluster_size=header.cluster_size,
        found_by_scan=by_scan,
        encrypted=header.crypt_method != 0,
        data_file=_scanned_data_file(real, header) if by_scan else data_file_of(real, header),
        snapshots=tuple(InternalSnapshot(s.name, s.virtual_size) for s in header.snapshots),
        bitmaps=header.bitmaps,
    )


def _scanned_data_file(path: str, header: Qcow2Header) -> str | None:
    """A sibling's data file where it can be known; a sibling is never refused for it."""
    try:
        return data_file_of(path, header)
    except ImageError:
        return None


def _on_disk(path: str) -> int | None:
    try:
        return int(os.stat(path).st_blocks) * 512
    except OSError:
        return None


def walk_headers(image: str, headers: dict[str, Qcow2Header] | None = None) -> list[Layer]:
    """The chain of ``image`` from its headers alone, checked before any qemu process runs.

    ``headers`` collects each parsed header by path, for the allocation reader.
    """
    # Not abspath(): normalising ".." before symlinks are followed would name another file.
    access = image if os.path.isabs(image) else os.path.join(os.getcwd(), image)
    fmt = "qcow2"
    layers: list[Layer] = []
    seen: set[str] = set()
    if not os.path.exists(access):
        target = f" (a broken link to {os.path.realpath(access)})" if os.path.islink(access) else ""
        raise ImageError(access, f"does not exist{target}")
    while True:
        real = os.path.realpath(access)
        if real in seen:
            raise ImageError(real, "its backing chain loops back on itself")
        seen.add(real)
        if fmt == "raw":
            if not os.path.isfile(real):
                raise ImageError(real, "is not a regular file")
            size = os.path.getsize(real)
            layers.append(
                Layer(path=real, format="raw", virtual_size=size, actual_size=_on_disk(real))
            )
            return layers
        header = read_header(real)
        if headers is not None:
            headers[real] = header
        _check_backing(real, header)
        layer = _layer_from_header(real, header, access, by_scan=False)
        layers.append(layer)
        if header.backing_name is None or header.backing_format is None:
            return layers
        target = resolve_backing(access, header.backing_name)
        if not os.path.exists(target):
            raise ImageError(real, f"its backing file '{header.backing_name}' is missing "
                                   f"(looked for {target})")  # fmt: skip
        access, fmt = target, header.backing_format


def read_chain(
    image: str, *, with_qemu_info: bool = True, headers: dict[str, Qcow2Header] | None = None
) -> ImageGraph:
    """Read ``image``'s chain: headers first (safe), then ``qemu-img info -U`` for the rest."""
    layers = walk_headers(image, headers)
    if with_qemu_info:
        layers = merge_qemu_info(layers)
    return ImageGraph(layers)


def scan_directories(
    graph: ImageGraph,
    directories: Iterable[str],
    headers: dict[str, Qcow2Header] | None = None,
) -> ImageGraph:
    """Add every qcow2 image in ``directories`` whose chain reaches a layer of ``graph``.

    Only headers are read, one file at a time, with no process per file. An image whose header
    lacks a backing format, or names its backing by a ``json:`` specification, is listed too:
    QEMU may still open it on top of a layer. Only images that cannot reach a layer of this
    graph (unreadable, unrelated, or on a network protocol) are left out.
    """
    candidates: dict[str, Layer] = {}
    scanned = list(dict.fromkeys(os.path.abspath(d) for d in directories))
    for directory in scanned:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.is_file():
                    continue
            except OSError:
                continue
            real = os.path.realpath(entry.path)
            if real in graph or real in candidates:
                continue
            try:
                header = read_header(real)
            except ImageError:
                continue
            name = header.backing_name
            if name is None or (unsafe_backing_reason(name) and not name.startswith("json:")):
                continue
            candidates[real] = _layer_from_header(real, header, entry.path, by_scan=True)
            if headers is not None:
                headers[real] = header
    known = set(graph.paths)
    found: list[Layer] = []
    growing = True
    while growing:
        growing = False
        for path, layer in list(candidates.items()):
            if layer.backing_path in known:
                known.add(path)
                found.append(layer)
                del candidates[path]
                growing = True
    graph = graph.with_layers(found) if found else graph
    return graph.with_scanned(scanned)


def default_scan_dirs(graph: ImageGraph) -> list[str]:
    """The directories that hold the graph's images."""
    return sorted({os.path.dirname(layer.path) for layer in graph})


def probe_facts(graph: ImageGraph) -> ImageGraph:
    """Fill in locks, writability and free space for every layer.

    A layer that a Backchain job is changing is named as such (with its pid and job id), so that
    its qemu-img's lock is never mistaken for a running VM.
    """
    layers = []
    for layer in graph:
        qemu_lock = locks.lock_holder(layer.path) is not None
        ours = image_locks.holder_of(layer.path)
        layers.append(
            replace(
                layer,
                in_use=qemu_lock or ours is not None,
                in_use_by=image_locks.describe_holder(ours) if ours is not None else None,
                # A layer with a data file keeps its data there: base grows on that file system.
                writable=locks.is_writable(layer.path)
                and (layer.data_file is None or locks.is_writable(layer.data_file)),
                free_bytes=locks.free_bytes(layer.data_file or layer.path),
            )
        )
    return graph.with_layers(layers)


def _read_tables(layer: Layer, header: Qcow2Header | None = None) -> Layer | None:
    """The layer with its own and its snapshots' allocation from its qcow2 tables, or None.

    ``header``, parsed earlier in this command, spares reading the header again.
    """
    try:
        header = header if header is not None else read_header(layer.path)
        extents, zeros = qcow2_alloc.own_allocation_and_zeros(layer.path, header=header)
        found = qcow2_alloc.snapshot_allocations(layer.path, header.snapshots, header)
    except ImageError:
        return None
    views = tuple(
        InternalSnapshot(entry.name, entry.virtual_size, own)
        for entry, own in zip(header.snapshots, found, strict=True)
    )
    bitmaps = layer.bitmaps or header.bitmaps
    return replace(layer, extents=extents, zeros=zeros, snapshots=views, bitmaps=bitmaps)


def load_extents(
    graph: ImageGraph,
    paths: Sequence[str] | None = None,
    jobs: int | None = None,
    reader: str = "tables",
    headers: Mapping[str, Qcow2Header] | None = None,
) -> ImageGraph:
    """Fill in each layer's own allocation extents, and its internal snapshots' ones.

    ``reader="tables"`` reads qcow2 L1/L2 tables directly (exactly qemu-img map's answer, about
    ten times faster: see tests/bench); a layer it cannot read falls back to ``qemu-img map``,
    which then gives the authoritative answer or error. ``"qemu-img"`` always runs qemu-img map,
    several runs at a time. A scanned image whose map cannot be read keeps ``extents=None``: the
    plan lists it with its whole size rather than fail for an image that is not in the chain.
    ``headers`` (parsed earlier in this command) spare reading them again.
    """
    wanted = [graph.layer(p) for p in (paths if paths is not None else graph.paths)]
    wanted = [layer for layer in wanted if layer.extents is None]
    if not wanted:
        return graph
    read: list[Layer] = []
    if reader == "tables":
        for layer in wanted:
            parsed = None if headers is None else headers.get(layer.path)
            done = _read_tables(layer, parsed) if layer.format == "qcow2" else None
            if done is not None:
                read.append(done)
        known = {layer.path for layer in read}
        wanted = [layer for layer in wanted if layer.path not in known]
    if wanted:
        from concurrent.futures import ThreadPoolExecutor  # only here: it imports logging

        workers = jobs or min(8, (os.cpu_count() or 2) * 2)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_map_one, wanted))
        read += [replace(layer, extents=ext) for layer, ext in zip(wanted, results, strict=True)]
    return graph.with_layers(read)


def _map_one(layer: Layer) -> ExtentSet | None:
    try:
        return qemu_img.own_extents(layer.path, layer.format)
    except EngineError as err:
        if layer.found_by_scan:
            return None
        cause = f"its allocation map cannot be read: {err.message}"
        raise ImageError(layer.path, cause) from err


_EARLY: dict[str, tuple[list[Layer], dict[str, Qcow2Header], ChainCheck]] = {}


def read_early(image: str) -> None:
    """Walk ``image``'s headers and start qemu-img's reading of its chain now, for this
    process's coming open_graph(image): the command line calls it before loading its commands,
    so that qemu-img runs while Python imports. Whatever fails here is left for open_graph to
    find again and report where it always does."""
    headers: dict[str, Qcow2Header] = {}
    try:
        layers = walk_headers(image, headers)
    except Exception:
        return
    _EARLY[image] = (layers, headers, ChainCheck(layers))


def open_graph(
    image: str,
    scan_dirs: Sequence[str] | None = None,
    extents: bool = True,
    meanwhile: Callable[[], object] | None = None,
) -> ImageGraph:
    """Everything the planner needs about ``image``: chain, siblings, file facts and extents.

    Each file's header is read once: the allocation reader takes the parsed ones. The caller's
    ``meanwhile`` (loading what it needs next, say) runs while qemu-img still reads the chain.
    """
    early = _EARLY.pop(image, None)
    if early is not None:
        layers, headers, check = early
    else:
        headers = {}
        layers = walk_headers(image, headers)
        # qemu-img's own reading of the chain (a process start, most of it) runs meanwhile.
        check = ChainCheck(layers)
    try:
        graph = ImageGraph(layers)
        directories = scan_dirs if scan_dirs is not None else default_scan_dirs(graph)
        graph = scan_directories(graph, directories, headers)
        graph = probe_facts(graph)
        graph = load_extents(graph, headers=headers) if extents else graph
        if meanwhile is not None:
            meanwhile()
    except BaseException:
        check.merged()  # qemu-img's verdict on the chain comes first, as when it ran first
        raise
    return check.applied_to(graph)
