"""The libvirt calls a plan carries, and the domain XML reader, as plain data."""

from __future__ import annotations

from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest, OnReady
from backchain.engines.libvirt.read import labels_for, parse_disks
from backchain.engines.libvirt.repoint import repointed_xml
from backchain.engines.libvirt.steps import offline_part, shut_off_plan
from backchain.engines.registry import make_plan as plan

MiB = 1 << 20
XML = """<domain type='qemu'><name>d</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/v/active.qcow2' index='1'/>
<backingStore type='file' index='2'><format type='qcow2'/><source file='/v/snap.qcow2'/>
<backingStore type='file' index='3'><format type='raw'/><source file='/v/base.img'/>
<backingStore/></backingStore></backingStore><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><source file='/v/x.iso'/><target dev='hdc'/></disk>
</devices></domain>"""


def graph() -> ImageGraph:
    names = ["active", "snap2", "snap1", "base"]
    layers = []
    for i, name in enumerate(names):
        below = names[i + 1] if i + 1 < len(names) else None
        layers.append(Layer(
            path=f"/v/{name}.qcow2", format="qcow2", virtual_size=64 * MiB,
            backing_name=f"{below}.qcow2" if below else None,
            backing_format="qcow2" if below else None,
            backing_path=f"/v/{below}.qcow2" if below else None,
            extra={"label": f"vda[{i + 1}]", "disk": "vda"},
        ))  # fmt: skip
    return ImageGraph(layers)


def call_of(**kwargs: object) -> dict[str, object]:
    result = plan(graph(), CommitRequest(image="/v/active.qcow2", engine="libvirt", **kwargs))  # type: ignore[arg-type]
    return dict(result.steps[0].call or {})


def test_every_flag_maps_from_the_request() -> None:
    base = "VIR_DOMAIN_BLOCK_COMMIT_"
    assert call_of(top="vda[2]")["flags"] == [base + "BANDWIDTH_BYTES"]
    assert call_of(top="vda[2]", shallow=True)["flags"] == [base + "BANDWIDTH_BYTES",
                                                            base + "SHALLOW"]  # fmt: skip
    assert base + "DELETE" in call_of(top="vda[2]", delete=True)["flags"]
    assert base + "RELATIVE" in call_of(top="vda[2]", keep_relative=True)["flags"]
    active = call_of(active=True, on_ready=OnReady.PIVOT)
    assert base + "ACTIVE" in active["flags"] and active["top"] == "vda[1]"
    assert call_of(top="vda[3]", rate=5 * MiB)["bandwidth"] == 5 * MiB


def test_layers_are_named_by_vda_index() -> None:
    call = call_of(top="vda[2]", base="vda[4]")
    assert (call["disk"], call["top"], call["base"]) == ("vda", "vda[2]", "vda[4]")


def test_active_commit_ends_with_block_job_abort() -> None:
    keep = plan(graph(), CommitRequest(image="/v/active.qcow2", engine="libvirt", active=True,
                                       on_ready=OnReady.KEEP_OVERLAY))  # fmt: skip
    assert keep.steps[1].call == {"call": "virDomainBlockJobAbort", "disk": "vda", "flags": []}


def test_shut_off_plan_checks_state_first_and_repoints_last() -> None:
    offline = plan(graph(), CommitRequest(image="/v/active.qcow2"))
    wrapped = shut_off_plan(offline, "d", "vda", True, "qcow2")
    assert wrapped.engine == "libvirt"
    assert wrapped.steps[0].kind == "virDomainGetState"
    assert wrapped.steps[-1].call == {"call": "virDomainDefineXML", "domain": "d", "disk": "vda",
                                      "source": "/v/base.qcow2", "format": "qcow2"}  # fmt: skip
    assert offline_part(wrapped).steps == offline.steps
    assert offline_part(wrapped).engine == "qemu-img"


def test_domain_xml_chain_and_labels() -> None:
    (disk,) = parse_disks(XML)
    assert [x.path for x in disk.chain] == ["/v/active.qcow2", "/v/snap.qcow2", "/v/base.img"]
    assert [x.format for x in disk.chain] == ["qcow2", "qcow2", "raw"]
    assert labels_for(disk) == ["vda[1]", "vda[2]", "vda[3]"]


def test_repointed_xml_changes_only_the_disk_source() -> None:
    (disk,) = parse_disks(repointed_xml(XML, "vda", "/v/base.img", "raw"))
    assert [x.path for x in disk.chain] == ["/v/base.img"]
    assert disk.chain[0].format == "raw"
