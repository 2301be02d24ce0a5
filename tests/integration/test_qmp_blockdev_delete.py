"""--delete online when the deleted files are QEMU nodes of their own (-blockdev): QEMU never
closes those after the job, so Backchain removes them (blockdev-del), format node and then a
protocol node of its own, only when nothing in QEMU uses them; nodes QEMU opened itself close
on their own. Real QEMU, every kind of node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backchain.core.errors import EngineError
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.qmp.graph import file_path_of
from backchain.engines.qmp.job import QmpJobControl
from backchain.engines.runner import run_plan
from tests.images import (
    ChainBuilder,
    MiB,
    backing_name,
    checksums,
    compare,
    create,
    reads,
    snapshot_copy,
)
from tests.images import backchain as cli
from tests.integration.test_qmp_commit import (
    P_TOP,
    assert_view_intact,
    chain_names,
)
from tests.integration.test_qmp_pull import assert_guest_view_intact, online_pull
from tests.qemu_vm import QemuVM, running_vm

KINDS = {
    "implicit": {"explicit_backing": False},
    "blockdev": {"explicit_backing": True},
    "blockdev+protocol": {"explicit_backing": True, "protocol_nodes": True},
}


def _open_files(vm: QemuVM) -> dict[str, list[str]]:
    """File -> the node names QEMU opens it with (format and protocol nodes)."""
    nodes = vm.execute("query-named-block-nodes")
    assert isinstance(nodes, list)
    files: dict[str, list[str]] = {}
    for node in nodes:
        path = file_path_of(str(node["file"]))  # json:{...} for a node with a backing node
        files.setdefault(path, []).append(str(node["node-name"]))
    return files


def _kind_of(vm: QemuVM, path: Path) -> list[str]:
    names = _open_files(vm).get(str(path), [])
    return sorted("auto" if name.startswith("#") else name for name in names)


@pytest.mark.parametrize("kind", list(KINDS))
def test_pull_delete_removes_the_nodes_then_the_files(
    chain_builder: ChainBuilder, tmp_path: Path, kind: str
) -> None:
    """Flatten top with --delete: mid and base go, in that order (mid's node uses base's)."""
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    with running_vm([base, mid, top], tmp_path, **KINDS[kind]) as vm:  # type: ignore[arg-type]
        if kind == "blockdev+protocol":
            assert _kind_of(vm, mid) == ["mid", "mid-file"]
        planned = cli("plan", "--pull", "--qmp", vm.socket, "--delete", "--json")
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        assert document["deleted"] == [str(mid), str(base)]
        own = [n for n in document["notes"] if "as nodes of their own" in n]
        if kind == "implicit":
            assert own == []  # QEMU opened them itself, and closes them itself
        else:
            assert own and "mid.qcow2 ('mid')" in own[0] and "base.qcow2 ('base')" in own[0]
        result = cli("pull", "--qmp", vm.socket, "--delete", "--yes")
        assert result.returncode == 0, result.stderr
        assert not mid.exists() and not base.exists()
        open_now = _open_files(vm)
        assert str(mid) not in open_now and str(base) not in open_now
        assert "top" in open_now[str(top)]  # the device's node is untouched
        assert_guest_view_intact(vm)
    assert backing_name(top) is None
    assert compare(top, before)
    assert_view_intact(top)


@pytest.mark.parametrize("kind", list(KINDS))
def test_active_commit_delete_removes_the_old_tops_node_after_the_pivot(
    chain_builder: ChainBuilder, tmp_path: Path, kind: str
) -> None:
    """top is always a -blockdev node of its own (it is the device's): after the pivot nothing
    uses it, so it is removed and deleted; base stays byte-identical."""
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    before = snapshot_copy(top, tmp_path / "before.qcow2")
    base_sum = checksums([base])
    with running_vm([base, mid, top], tmp_path, **KINDS[kind]) as vm:  # type: ignore[arg-type]
        result = cli("commit", "--qmp", vm.socket, "--base", str(mid), "--active", "--pivot",
                     "--delete", "--yes")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert not top.exists()
        assert str(top) not in _open_files(vm)
        # The guest now reads mid, which holds top's data: the same view as before.
        assert_guest_view_intact(vm, "mid" if kind != "implicit" else _node_of(vm, mid))
        assert reads(mid, P_TOP, 2 * MiB, MiB)
    assert chain_names(mid) == ["mid.qcow2", "base.qcow2"]
    assert compare(mid, before)
    assert checksums([base]) == base_sum


def _node_of(vm: QemuVM, path: Path) -> str:
    nodes = vm.execute("query-named-block-nodes")
    assert isinstance(nodes, list)
    return next(str(n["node-name"]) for n in nodes
                if file_path_of(str(n["file"])) == str(path) and n["drv"] == "qcow2")  # fmt: skip


@pytest.mark.parametrize("kind", ["blockdev", "blockdev+protocol"])
def test_a_node_that_something_else_in_qemu_uses_is_kept_with_its_file(
    chain_builder: ChainBuilder, tmp_path: Path, kind: str
) -> None:
    """After the plan, another node is opened on mid (blockdev-add with backing=mid): a stream
    leaves that link alone, so mid is still used, neither its node nor its file is removed, and
    the words say who uses it. (A commit would have moved that link to base itself.)"""
    base, mid, top = chain_builder.chain(["base.qcow2", "mid.qcow2", "top.qcow2"])
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    other = create(other_dir / "other.qcow2", backing=str(mid))
    with running_vm([base, mid, top], tmp_path, **KINDS[kind]) as vm:  # type: ignore[arg-type]
        _, plan = online_pull(vm.socket, base=str(base), delete=True)
        assert plan.deleted == (str(mid),)
        file = {"driver": "file", "filename": str(other)}
        vm.execute("blockdev-add", {"driver": "qcow2", "node-name": "other", "backing": "mid",
                                    "file": file})  # fmt: skip
        sums = checksums([mid])
        control = QmpJobControl(vm.socket)
        control.close_wait = 0.5
        with pytest.raises(EngineError) as failed:
            run_plan(plan, RecordingSink(), CancelToken(), control.target())
        assert f"QEMU still opens {mid} (used by other (backing))" in str(failed.value)
        assert "the pull succeeded" in str(failed.value)
        assert mid.exists() and checksums([mid]) == sums
        assert "mid" in _kind_of(vm, mid)
        assert_guest_view_intact(vm)
        vm.execute("blockdev-del", {"node-name": "other"})
    assert chain_names(top) == ["top.qcow2", "base.qcow2"]
    assert_view_intact(top)
