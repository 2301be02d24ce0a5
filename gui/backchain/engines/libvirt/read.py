"""Reading libvirt: connections, domains, their disks, and each disk's chain as an ImageGraph."""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from backchain.core.errors import EngineError, ImageError
from backchain.core.graph import ImageGraph, Layer
from backchain.core.valueclass import replace, valueclass

DEFAULT_URI = "qemu:///system"
INSTALL_HINT = (
    "libvirt support needs the libvirt-python binding: pip install 'backchain[libvirt]' "
    "(building it needs libvirt-dev and pkg-config: apt-get install libvirt-dev pkg-config)"
)
# The AppImage bundles the binding but loads the host's client library (libvirt.so.0), as it
# runs the host's qemu-img and QEMU: people who manage libvirt VMs have it installed.
HOST_INSTALL_HINT = (
    "libvirt support in {bundle} uses this computer's libvirt client library (libvirt.so.0), "
    "and {problem}. Install it on this computer: apt install libvirt-clients (Debian, Ubuntu; "
    "libvirt0 alone is enough), dnf install libvirt-client (Fedora, RHEL), pacman -S libvirt "
    "(Arch), zypper install libvirt-client (openSUSE)."
)
REMOTE_NOTE = (
    "remote host: the chain is what libvirt's domain XML says; sibling images and allocation "
    "maps on that host cannot be read, so images at risk are not known"
)


def install_hint(error: BaseException | None = None) -> str:
    """What to install when ``import libvirt`` failed with ``error``: pip, or the host's libvirt."""
    if not getattr(sys, "frozen", False):
        return INSTALL_HINT
    bundle = "the AppImage" if os.environ.get("APPIMAGE") else "this bundle"
    if isinstance(error, ModuleNotFoundError) and error.name in ("libvirt", "libvirtmod"):
        return f"{bundle} was built without libvirt support (BACKCHAIN_APPIMAGE_LIBVIRT=0)"
    text = str(error or "")
    too_old = re.search(r"version `LIBVIRT\w*?_(\d[\d.]*)' not found", text)
    if too_old:
        # ld.so names only the first missing version, so this is a lower bound.
        problem = f"the one installed is too old (it lacks the libvirt {too_old.group(1)} API)"
    elif text:
        problem = f"it could not be loaded ({text})"
    else:
        problem = "it could not be loaded"
    return HOST_INSTALL_HINT.format(bundle=bundle, problem=problem)


def require_libvirt() -> ModuleType:
    """The libvirt module, or an EngineError that says what to install."""
    try:
        import libvirt
    except ImportError as err:
        raise EngineError(install_hint(err)) from err
    # libvirt prints every error to stderr by default; we report them ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    module: ModuleType = libvirt
    return module


def is_local(uri: str) -> bool:
    """Whether the URI names this machine (no host part), so its image files can be read here."""
    return not urlsplit(uri).netloc


def libvirt_error(err: Exception, doing: str = "") -> EngineError:
    """An EngineError that carries libvirt's own message unchanged."""
    message = str(err)
    return EngineError(message, stderr=doing)


def open_connection(uri: str) -> Any:
    """A read-write virConnect for ``uri`` (libvirt's message on failure)."""
    libvirt = require_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"connecting to {uri}") from err


def lookup_domain(conn: Any, name: str) -> Any:
    """The domain called ``name``."""
    libvirt = require_libvirt()
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"looking up domain {name}") from err


@valueclass(frozen=True)
class XmlLayer:
    """One layer of a disk's chain as the domain XML shows it."""

    path: str
    format: str
    index: int | None


@valueclass(frozen=True)
class DiskInfo:
    """One disk of a domain: its target name and the chain in the domain XML (active first)."""

    target: str
    chain: tuple[XmlLayer, ...]


@valueclass(frozen=True)
class DomainInfo:
    """A domain, whether it runs, and its file-backed disks."""

    name: str
    running: bool
    persistent: bool
    disks: tuple[DiskInfo, ...]


def parse_disks(xml: str) -> tuple[DiskInfo, ...]:
    """Every file-backed disk in a domain XML, with its ``<backingStore index=N>`` chain."""
    root = ET.fromstring(xml)
    disks = []
    for disk in root.findall("./devices/disk"):
        target = disk.find("target")
        source = disk.find("source")
        if target is None or source is None or disk.get("device", "disk") != "disk":
            continue
        if source.get("file") is None:
            continue  # network, block and volume disks are outside what Backchain can read
        driver = disk.find("driver")
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        chain = [XmlLayer(source.get("file", ""), fmt, _index(source))]
        store = disk.find("backingStore")
        while store is not None and store.find("source") is not None:
            src = store.find("source")
            fmt_el = store.find("format")
            assert src is not None
            # Older libvirt put index on <backingStore>, newer on <source>: accept both.
            index = _index(store) if store.get("index") else _index(src)
            chain.append(
                XmlLayer(
                    src.get("file", ""),
                    fmt_el.get("type", "raw") if fmt_el is not None else "raw",
                    index,
                )
            )
            store = store.find("backingStore")
        disks.append(DiskInfo(target.get("dev", ""), tuple(chain)))
    return tuple(disks)


def _index(element: ET.Element) -> int | None:
    value = element.get("index")
    return int(value) if value is not None and value.isdigit() else None


def labels_for(disk: DiskInfo) -> list[str]:
    """``vda[N]`` for each layer: libvirt's indexes, or positions 1.. when it gave none."""
    indexes = [layer.index for layer in disk.chain]
    if all(index is not None for index in indexes):
        return [f"{disk.target}[{index}]" for index in indexes]
    # A shut-off domain's XML has no indexes; libvirt numbers a fresh start 1, 2, ... like this.
    return [f"{disk.target}[{n}]" for n in range(1, len(disk.chain) + 1)]


def domain_state(dom: Any) -> tuple[bool, bool]:
    """(running, shut off) of a domain; paused counts as running, as libvirt still owns QEMU."""
    libvirt = require_libvirt()
    try:
        state, _reason = dom.state()
    except libvirt.libvirtError as err:
        raise libvirt_error(err) from err
    off = state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
    return (not off, off)


def list_domains(uri: str) -> list[DomainInfo]:
    """Every domain on ``uri`` (running and defined), sorted by name, with its disks."""
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        result = []
        for dom in conn.listAllDomains(0):
            try:
                xml = dom.XMLDesc(0)
                persistent = bool(dom.isPersistent())
                state, _reason = dom.state()
            except libvirt.libvirtError as err:
                if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # a transient domain went away while the list was read
                raise
            running = state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED)
            result.append(DomainInfo(dom.name(), running, persistent, parse_disks(xml)))
        return sorted(result, key=lambda d: d.name)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"listing domains on {uri}") from err
    finally:
        conn.close()


def find_disk(disks: tuple[DiskInfo, ...], target: str | None, domain: str) -> DiskInfo:
    """The disk named ``target`` (or the only file-backed disk when ``target`` is None)."""
    if target is None:
        if len(disks) == 1:
            return disks[0]
        names = ", ".join(d.target for d in disks) or "none"
        raise EngineError(f"domain '{domain}' has several disks ({names}): choose one with --disk")
    for disk in disks:
        if disk.target == target:
            return disk
    names = ", ".join(d.target for d in disks) or "none"
    raise EngineError(f"domain '{domain}' has no file-backed disk '{target}' (it has: {names})")


def read_disk(uri: str, domain: str, disk: str | None) -> tuple[DiskInfo, bool, int, str | None]:
    """The disk's XML chain, whether the domain runs, the disk's capacity in bytes, and the
    block job the disk is in (virDomainGetBlockJobInfo), if any."""
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        running, _off = domain_state(dom)
        info = find_disk(parse_disks(dom.XMLDesc(0)), disk, domain)
        try:
            capacity = int(dom.blockInfo(info.target)[0]) if running else 0
        except libvirt.libvirtError:
            capacity = 0
        job = None
        if running:
            try:
                found = dom.blockJobInfo(info.target, 0)
            except libvirt.libvirtError as err:
                raise libvirt_error(err, f"reading the block job of disk {info.target}") from err
            if found:
                job = f"{info.target}: libvirt block job (type {found.get('type')})"
        return info, running, capacity, job
    finally:
        conn.close()


def read_domain_graph(
    uri: str, domain: str, disk: str | None = None, *, extents: bool = True
) -> ImageGraph:
    """The disk's chain as an ImageGraph, each layer labelled ``vda[N]`` in ``extra``.

    Local files are read like offline images (headers, siblings, allocation); for a remote host
    the domain XML's chain is all there is.
    """
    return domain_graph(uri, domain, disk, extents=extents)[0]


def domain_graph(
    uri: str, domain: str, disk: str | None = None, *, extents: bool = True
) -> tuple[ImageGraph, DiskInfo, bool]:
    """read_domain_graph, plus the disk as the XML shows it and whether the domain runs."""
    info, running, capacity, job = read_disk(uri, domain, disk)
    labels = labels_for(info)
    if is_local(uri):
        graph = _local_graph(info, labels, running, extents)
    else:
        graph = _remote_graph(info, labels, capacity)
    if job is not None:
        # The disk's own layers are in the job; siblings found by scanning are not.
        graph = graph.with_layers(replace(layer, block_job=job) for layer in graph
                                  if layer.extra.get("disk") == info.target)  # fmt: skip
    return graph, info, running


def _local_graph(info: DiskInfo, labels: list[str], running: bool, extents: bool) -> ImageGraph:
    from backchain.engines.files import scan

    try:
        graph = scan.read_chain(info.chain[0].path)
    except ImageError as err:
        raise EngineError(f"disk {info.target}: {err}") from err
    chain = graph.chain(os.path.realpath(info.chain[0].path))
    if running and [layer.path for layer in chain] != [
        os.path.realpath(x.path) for x in info.chain
    ]:
        raise EngineError(
            f"disk {info.target}: the image headers show a different chain than libvirt's "
            "domain XML; refusing to guess which one is right"
        )
    if not running:
        # A shut-off domain's XML shows only the disk's source; the headers give the rest.
        labels = [f"{info.target}[{n}]" for n in range(1, len(chain) + 1)]
    labelled = [
        replace(layer, extra={"label": label, "disk": info.target})
        for layer, label in zip(chain, labels, strict=True)
    ]
    graph = graph.with_layers(labelled)
    graph = scan.scan_directories(graph, scan.default_scan_dirs(graph))
    graph = scan.probe_facts(graph)
    return scan.load_extents(graph) if extents else graph


def _remote_graph(info: DiskInfo, labels: list[str], capacity: int) -> ImageGraph:
    layers = []
    for position, (item, label) in enumerate(zip(info.chain, labels, strict=True)):
        below = info.chain[position + 1] if position + 1 < len(info.chain) else None
        layers.append(
            Layer(
                path=item.path,
                format=item.format,
                virtual_size=capacity,
                # The header's own backing name cannot be read remotely; libvirt checks
                # RELATIVE itself on the far side.
                backing_name=None,
                backing_format=below.format if below else None,
                backing_path=below.path if below else None,
                extra={"label": label, "disk": info.target},
            )
        )
    return ImageGraph(layers)
