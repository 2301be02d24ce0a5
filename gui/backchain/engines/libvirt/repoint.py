"""Re-pointing a shut-off domain's disk to another image: its domain XML, rewritten and defined."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

from backchain.core.errors import EngineError
from backchain.engines.libvirt.read import (
    libvirt_error,
    lookup_domain,
    open_connection,
    require_libvirt,
)

_QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_DEFINE_LOCK = threading.Lock()


def repoint_disk(uri: str, domain: str, disk: str, source: str, fmt: str) -> None:
    """Set a defined domain's disk source to ``source`` with virDomainDefineXML (no pivot needed).

    Only the persistent definition changes; the old ``<backingStore>`` is dropped so that libvirt
    reads the new chain from the image itself at the next start.
    """
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        # Read-modify-define: two disks of one domain re-pointed at once (a collapse) must not
        # each define the XML they read before the other's change.
        with _DEFINE_LOCK:
            dom = lookup_domain(conn, domain)
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
            xml = dom.XMLDesc(flags)
            conn.defineXML(repointed_xml(xml, disk, source, fmt))
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"re-pointing disk {disk} of {domain}") from err
    finally:
        conn.close()


def repointed_xml(xml: str, disk: str, source: str, fmt: str) -> str:
    """The domain XML with ``disk``'s source file and format replaced."""
    ET.register_namespace("qemu", _QEMU_NS)
    root = ET.fromstring(xml)
    for element in root.findall("./devices/disk"):
        target = element.find("target")
        if target is None or target.get("dev") != disk:
            continue
        src = element.find("source")
        driver = element.find("driver")
        if src is None or src.get("file") is None:
            break
        src.set("file", source)
        if driver is not None:
            driver.set("type", fmt)
        for store in element.findall("backingStore"):
            element.remove(store)
        return ET.tostring(root, encoding="unicode")
    raise EngineError(f"domain XML has no file-backed disk '{disk}' to re-point")
