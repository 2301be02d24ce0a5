"""The QMP block-commit command a plan carries, and reading QMP's answers into layers."""

from __future__ import annotations

import json

from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest, OnReady
from backchain.engines.qmp.graph import file_path_of, live_layers
from backchain.engines.qmp.session import parse_address
from backchain.engines.qmp.steps import job_id_for
from backchain.engines.registry import make_plan as plan

MiB = 1 << 20


def live_chain(relative: bool = True) -> ImageGraph:
    """base <- mid <- top in /vm, as read from a running QEMU."""

    def name(target: str) -> str:
        return f"{target}.qcow2" if relative else f"/vm/{target}.qcow2"

    return ImageGraph(
        [
            Layer("/vm/base.qcow2", "qcow2", 64 * MiB, node_name="base"),
            Layer("/vm/mid.qcow2", "qcow2", 64 * MiB, backing_name=name("base"),
                  backing_format="qcow2", backing_path="/vm/base.qcow2", node_name="mid"),
            Layer("/vm/top.qcow2", "qcow2", 64 * MiB, backing_name=name("mid"),
                  backing_format="qcow2", backing_path="/vm/mid.qcow2", node_name="top",
                  extra={"device": "vd0"}),
        ]
    )  # fmt: skip


def commit_call(graph: ImageGraph, **options: object) -> dict[str, object]:
    request = CommitRequest(image="vd0", engine="qmp", **options)  # type: ignore[arg-type]
    step = plan(graph, request).steps[0]
    assert step.kind == "block-commit" and step.call is not None
    assert step.call["execute"] == "block-commit"
    arguments: dict[str, object] = dict(step.call["arguments"])
    return arguments


def test_intermediate_commit_is_addressed_by_node_with_manual_finalize_and_dismiss() -> None:
    arguments = commit_call(live_chain(), top="mid", base="base", rate=MiB)
    assert arguments == {
        "job-id": "backchain-commit-mid",
        "device": "top",
        "top-node": "mid",
        "base-node": "base",
        "speed": MiB,
        "auto-finalize": False,
        "auto-dismiss": False,
        "backing-file": "base.qcow2",
    }


def test_backing_file_stays_absolute_where_the_original_was_absolute() -> None:
    assert commit_call(live_chain(relative=False), top="mid")["backing-file"] == "/vm/base.qcow2"


def test_active_commit_carries_no_backing_file() -> None:
    arguments = commit_call(live_chain(), active=True, on_ready=OnReady.PIVOT)
    assert arguments["top-node"] == "top" and "backing-file" not in arguments


def test_job_ids_drop_characters_qemu_refuses() -> None:
    layer = Layer("/vm/x.qcow2", "qcow2", MiB, node_name="#block271")
    assert job_id_for(layer) == "backchain-commit-block271"


def test_json_pseudo_names_give_the_real_file() -> None:
    base = {"driver": "qcow2", "file": {"driver": "file", "filename": "/vm/base.qcow2"}}
    spec = {
        "driver": "qcow2",
        "backing": base,
        "file": {"driver": "file", "filename": "/vm/mid.qcow2"},
    }
    assert file_path_of("json:" + json.dumps(spec)) == "/vm/mid.qcow2"
    assert file_path_of("/vm/plain.qcow2") == "/vm/plain.qcow2"


def test_addresses_are_socket_paths_or_host_and_port() -> None:
    assert parse_address("/run/qmp.sock") == "/run/qmp.sock"
    assert parse_address("localhost:4444") == ("localhost", 4444)


def test_live_layers_skip_protocol_nodes_and_label_the_device() -> None:
    nodes = [
        {"node-name": "top", "drv": "qcow2", "file": "/vm/top.qcow2", "ro": False,
         "image": {"filename": "/vm/top.qcow2", "virtual-size": MiB,
                   "backing-filename": "base.qcow2", "backing-filename-format": "qcow2",
                   "backing-image": {"filename": "/vm/base.qcow2"}}},
        {"node-name": "#block1", "drv": "file", "file": "/vm/top.qcow2"},
        {"node-name": "#block2", "drv": "qcow2", "file": "/vm/base.qcow2", "ro": True,
         "image": {"filename": "/vm/base.qcow2", "virtual-size": MiB}},
    ]  # fmt: skip
    blocks = [{"device": "", "qdev": "/machine/peripheral/vd0/virtio-backend",
               "inserted": {"node-name": "top"}}]  # fmt: skip
    layers = {layer.node_name: layer for layer in live_layers(nodes, blocks)}
    assert set(layers) == {"top", "#block2"}
    assert layers["top"].extra == {"device": "vd0"}
    assert layers["top"].backing_path == "/vm/base.qcow2"
    assert layers["top"].backing_name == "base.qcow2"


def test_live_layers_record_a_root_filter_on_the_image_below_it() -> None:
    """040 TestCommitWithFilters: throttle at the root, as query-named-block-nodes shows it."""
    inner = '{"driver": "qcow2", "file": {"driver": "file", "filename": "/vm/top.qcow2"}}'
    nodes = [
        {"node-name": "thr", "drv": "throttle",
         "file": 'json:{"throttle-group": "tg0", "driver": "throttle", "file": ' + inner + "}"},
        {"node-name": "top", "drv": "qcow2", "file": "json:" + inner,
         "image": {"filename": "json:" + inner, "virtual-size": MiB}},
    ]  # fmt: skip
    blocks = [{"device": "", "qdev": "/machine/peripheral/vd0/virtio-backend",
               "inserted": {"node-name": "thr"}}]  # fmt: skip
    layers = live_layers(nodes, blocks)
    assert [(layer.node_name, dict(layer.extra)) for layer in layers] == [
        ("top", {"device": "vd0", "root": "thr"})
    ]
