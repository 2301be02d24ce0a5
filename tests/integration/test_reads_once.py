"""One command reads each image's header once and runs ``qemu-img info`` at most once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backchain import launch
from backchain.core.model import CommitRequest
from backchain.engines.base import ImageTarget
from backchain.engines.files import qcow2, qcow2_alloc, qemu_info, scan
from backchain.engines.files.scan import open_graph
from backchain.engines.qemu_img.engine import QemuImgEngine
from tests.images import ChainBuilder, create


class Calls:
    """Counts the calls of patched functions, by their first argument."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.seen: dict[str, Counter[str]] = {}

    def count(self, owner: object, name: str) -> None:
        real: Callable[..., Any] = getattr(owner, name)
        seen = self.seen.setdefault(name, Counter())

        def counted(first: Any, *args: Any, **kwargs: Any) -> Any:
            seen[str(first)] += 1
            return real(first, *args, **kwargs)

        self.monkeypatch.setattr(owner, name, counted)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counter = Calls(monkeypatch)
    counter.count(scan, "read_header")
    counter.count(qcow2_alloc, "_read_geometry")
    counter.count(qemu_info, "ChainInfo")  # every qemu-img info, info_chain's included
    return counter


def test_open_graph_reads_every_header_once_and_runs_qemu_img_info_once(
    chain_builder: ChainBuilder, tmp_path: Path, calls: Calls
) -> None:
    paths = chain_builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    create(tmp_path / "sibling.qcow2", backing="base.qcow2", cwd=tmp_path)
    graph = open_graph(str(paths[-1]))
    assert len(graph) == 4 and all(layer.extents is not None for layer in graph)
    assert set(calls.seen["read_header"].values()) == {1}
    assert set(calls.seen["read_header"]) == {layer.path for layer in graph}
    assert sum(calls.seen["_read_geometry"].values()) == 0
    assert sum(calls.seen["ChainInfo"].values()) == 1


def test_preflight_rechecks_the_headers_without_qemu_img_info(
    chain_builder: ChainBuilder, calls: Calls
) -> None:
    paths = chain_builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    engine = QemuImgEngine()
    target = ImageTarget(str(paths[-1]))
    plan = engine.prepare(open_graph(str(paths[-1])), target, CommitRequest(image=str(paths[-1])))
    before = sum(calls.seen["ChainInfo"].values())
    engine.preflight(plan, target)
    assert sum(calls.seen["ChainInfo"].values()) == before == 1
    assert set(calls.seen["read_header"].values()) == {2}  # the plan's read, and the re-check


def test_the_parsed_header_gives_the_same_geometry_as_reading_it_again(
    chain_builder: ChainBuilder,
) -> None:
    for path in chain_builder.chain(["base.qcow2", "snap1.qcow2"]):
        header = qcow2.read_header(str(path))
        with open(path, "rb") as handle:
            fd = handle.fileno()
            assert qcow2_alloc.header_geometry(header) == qcow2_alloc._read_geometry(str(path), fd)
        assert qcow2_alloc.own_allocation(str(path), header=header) == qcow2_alloc.own_allocation(
            str(path)
        )


def test_the_command_line_reads_the_chain_early_and_still_once(
    chain_builder: ChainBuilder, tmp_path: Path, calls: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    # launch.main starts the header walk and qemu-img info before it loads the commands;
    # open_graph then takes them over instead of reading again.
    paths = chain_builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    create(tmp_path / "sibling.qcow2", backing="base.qcow2", cwd=tmp_path)
    calls.count(scan, "read_early")
    calls.count(scan, "walk_headers")
    assert launch.main(["plan", "--json", str(paths[-1])]) == 0
    assert calls.seen["read_early"] == {str(paths[-1]): 1}
    assert calls.seen["walk_headers"] == {str(paths[-1]): 1}  # the early walk, taken over
    assert json.loads(capsys.readouterr().out)["image"] == str(paths[-1])
    assert set(calls.seen["read_header"].values()) == {1}
    assert len(calls.seen["read_header"]) == 4
    assert sum(calls.seen["ChainInfo"].values()) == 1
    assert scan._EARLY == {}


def test_an_early_read_that_fails_leaves_the_error_where_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.qcow2")
    assert launch.main(["plan", missing]) == 2
    assert "missing.qcow2" in capsys.readouterr().err
    assert scan._EARLY == {}
