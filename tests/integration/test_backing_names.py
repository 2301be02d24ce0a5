"""Relative backing names resolved as QEMU does, and --top/--base given as recorded names."""

from __future__ import annotations

import json
import os
from pathlib import Path

from backchain.core.model import CommitRequest
from backchain.engines.files.scan import open_graph, walk_headers
from backchain.engines.registry import make_plan
from tests.images import MiB, backchain, chain_info, create, write
from tests.views import commit_and_measure, read_view


def symlinked_chain(tmp_path: Path) -> tuple[Path, Path, Path]:
    """real/pool/base <- real/pool/vm/active ("../base.qcow2"), opened as links/vm/active.

    links/base.qcow2 is a decoy where normalising "links/vm/../base.qcow2" would look.
    """
    pool = tmp_path / "real" / "pool"
    (pool / "vm").mkdir(parents=True)
    (tmp_path / "links").mkdir()
    os.symlink(pool / "vm", tmp_path / "links" / "vm")
    base = create(pool / "base.qcow2", "8M")
    write(base, 0x11, 0, 8 * MiB)
    active = create(pool / "vm" / "active.qcow2", backing="../base.qcow2", cwd=pool / "vm")
    write(active, 0x22, MiB, MiB)
    decoy = create(tmp_path / "links" / "base.qcow2", "8M")
    write(decoy, 0x99, 0, 8 * MiB)
    return base, tmp_path / "links" / "vm" / "active.qcow2", decoy


def test_backing_names_through_a_symlinked_directory_resolve_as_qemu_img_does(
    tmp_path: Path,
) -> None:
    base, opened, decoy = symlinked_chain(tmp_path)
    expected = [os.path.realpath(str(e["filename"])) for e in chain_info(opened)]
    assert expected == [os.path.realpath(opened), str(base)]
    assert [layer.path for layer in walk_headers(str(opened))] == expected
    result = backchain("plan", "--json", "links/vm/active.qcow2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["base"] == str(base)
    graph = open_graph(str(opened))
    plan = make_plan(graph, CommitRequest(image=graph.chain(os.path.realpath(opened))[0].path))
    commit_and_measure(plan, [decoy], tmp_path)
    assert read_view(base, tmp_path)[MiB : 2 * MiB].tolist() == [0x22] * MiB


def test_top_and_base_accept_backing_names_as_the_chain_records_them(tmp_path: Path) -> None:
    base, opened, _ = symlinked_chain(tmp_path)
    result = backchain("plan", "--json", str(opened), "--base", "../base.qcow2",
                       cwd=tmp_path / "links")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["base"] == str(base)


def test_a_name_that_matches_two_different_layers_is_refused_naming_both(tmp_path: Path) -> None:
    (tmp_path / "x" / "y" / "z").mkdir(parents=True)
    low = create(tmp_path / "x" / "base.qcow2", "8M")
    mid = create(tmp_path / "x" / "y" / "base.qcow2", backing="../base.qcow2",
                 cwd=tmp_path / "x" / "y")  # fmt: skip
    active = create(tmp_path / "x" / "y" / "z" / "active.qcow2", backing="../base.qcow2",
                    cwd=tmp_path / "x" / "y" / "z")  # fmt: skip
    for cwd in (tmp_path, active.parent):
        result = backchain("plan", str(active), "--base", "../base.qcow2", cwd=cwd)
        assert result.returncode == 2, result.stdout
        assert str(low) in result.stderr and str(mid) in result.stderr, result.stderr
        assert "two different layers" in result.stderr
