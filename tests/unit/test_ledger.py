"""The ledger after real commits: what it marks, in which words, and when a mark drops out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from backchain.core.model import CommitPlan, CommitRequest
from backchain.core.plan import plan as make_plan
from backchain.engines import ledger
from backchain.engines.ledger import MarkKind
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.runner import run_offline
from backchain.engines.scan import open_graph
from tests.images import ChainBuilder, MiB, write

WHEN = time.mktime((2026, 12, 1, 19, 33, 0, 0, 0, -1))


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKCHAIN_STATE_DIR", str(tmp_path / "state"))


def _tree(tmp_path: Path) -> dict[str, str]:
    builder = ChainBuilder(tmp_path / "img")
    paths = builder.chain(["base.qcow2", "snap1.qcow2", "snap2.qcow2", "active.qcow2"])
    other = builder.overlay("other.qcow2", paths[0])
    write(other, 0x77, 40 * MiB, MiB)
    return {p.name: os.path.realpath(p) for p in [*paths, other]}


def _commit(names: dict[str, str], **request: object) -> CommitPlan:
    """Plan and run a real qemu-img commit; record it as the runner will once it is wired."""
    graph = open_graph(names["active.qcow2"])
    plan = make_plan(graph, CommitRequest(image=names["active.qcow2"], **request))  # type: ignore[arg-type]
    run_offline(plan, RecordingSink(), CancelToken())
    ledger.record(plan, when=WHEN)
    return plan


def test_a_default_commit_marks_the_merged_layers_the_active_one_and_the_sibling(
    tmp_path: Path,
) -> None:
    names = _tree(tmp_path)
    _commit(names)
    found = ledger.marks(names.values())
    kinds = {os.path.basename(p): m.kind for p, m in found.items()}
    assert kinds == {
        "snap1.qcow2": MarkKind.INVALID,
        "snap2.qcow2": MarkKind.INVALID,
        "active.qcow2": MarkKind.STALE,
        "other.qcow2": MarkKind.AT_RISK,
    }
    assert found[names["snap1.qcow2"]].text == (
        "invalid since commit into base.qcow2 on 2026-12-01 19:33"
    )
    assert found[names["other.qcow2"]].text.startswith("at risk since commit into base.qcow2")
    assert all(m.base == names["base.qcow2"] for m in found.values())


def test_a_changed_file_drops_out(tmp_path: Path) -> None:
    names = _tree(tmp_path)
    _commit(names)
    write(Path(names["active.qcow2"]), 0x99, 0, MiB)  # the VM wrote on: no longer "stale"
    assert names["active.qcow2"] not in ledger.marks(names.values())
    assert names["snap1.qcow2"] in ledger.marks(names.values())


def test_a_deleted_or_replaced_file_drops_out_and_forget_removes_an_entry(
    tmp_path: Path,
) -> None:
    names = _tree(tmp_path)
    _commit(names)
    os.unlink(names["snap2.qcow2"])
    # Same name, new file (new inode): the old verdict does not apply to it.
    Path(names["snap2.qcow2"]).write_bytes(b"")
    ledger.forget(names["other.qcow2"])
    found = ledger.marks(names.values())
    assert set(found) == {names["snap1.qcow2"], names["active.qcow2"]}


def test_deleted_layers_are_not_marked_and_a_new_base_loses_its_mark(tmp_path: Path) -> None:
    names = _tree(tmp_path)
    plan = _commit(names, top=names["snap2.qcow2"], base=names["snap1.qcow2"], delete=True)
    assert plan.deleted == (names["snap2.qcow2"],)
    assert ledger.marks(names.values()) == {}
    # A commit into base invalidates snap1; a later commit into snap1 writes it: no mark.
    names = _tree(tmp_path / "second")
    _commit(names, top=names["snap2.qcow2"], base=names["base.qcow2"])
    assert names["snap1.qcow2"] in ledger.marks(names.values())
    left = names["snap2.qcow2"]  # still on snap1, which it alone reads
    ledger.record(make_plan(open_graph(left), CommitRequest(image=left, base=names["snap1.qcow2"])))
    assert names["snap1.qcow2"] not in ledger.marks(names.values())


def test_an_unreadable_ledger_is_an_empty_one(tmp_path: Path) -> None:
    os.makedirs(os.path.dirname(ledger.ledger_path()), exist_ok=True)
    Path(ledger.ledger_path()).write_text("{not json")
    assert ledger.marks([str(tmp_path)]) == {}
    ledger.forget(str(tmp_path))  # no crash, nothing to forget
