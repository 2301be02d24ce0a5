"""Offline pulls with real qemu-img: patterns read back, top compared with a copy taken before,
every other file byte-identical."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from backchain.core.errors import CancelledError
from backchain.core.model import CommitRequest, Operation
from backchain.engines.files.scan import open_graph
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.registry import make_plan as plan
from backchain.engines.runner import run_plan
from tests.images import (
    ChainBuilder,
    MiB,
    backing_name,
    check_clean,
    check_not_corrupt,
    compare,
    snapshot_copy,
    tree_checksums,
    write,
)
from tests.images import backchain as cli
from tests.integration.test_offline_commit import NAMES, assert_view, chain_names


@pytest.fixture
def chain(chain_builder: ChainBuilder) -> list[Path]:
    return chain_builder.chain(NAMES)


def others_unchanged(before: dict[str, str], after: dict[str, str], *changed: Path) -> None:
    skip = {str(p) for p in changed}
    assert {k: v for k, v in before.items() if k not in skip} == {
        k: v for k, v in after.items() if k not in skip
    }


def copy_before(image: Path, tmp_path: Path) -> Path:
    (tmp_path / "copies").mkdir(exist_ok=True)
    return snapshot_copy(image, tmp_path / "copies" / f"{image.name}.before")


@pytest.mark.parametrize(
    ("options", "top", "backing", "chain_after"),
    [
        ([], 4, None, ["active.qcow2"]),
        (
            ["--base", "snap1.qcow2"],
            4,
            "snap1.qcow2",
            ["active.qcow2", "snap1.qcow2", "base.qcow2"],
        ),
        (
            ["--top", "snap3.qcow2", "--base", "base.qcow2"],
            3,
            "base.qcow2",
            ["active.qcow2", "snap3.qcow2", "base.qcow2"],
        ),
    ],
    ids=["standalone", "onto snap1", "into snap3"],
)
def test_pull_keeps_top_view_and_every_other_file(
    chain: list[Path],
    tmp_path: Path,
    options: list[str],
    top: int,
    backing: str | None,
    chain_after: list[str],
) -> None:
    active = chain[-1]
    copy = copy_before(chain[top], tmp_path)
    view_before = copy_before(active, tmp_path)
    sums = tree_checksums(tmp_path)
    result = cli("pull", "--yes", str(active), *options, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert backing_name(chain[top]) == backing
    assert chain_names(active) == chain_after
    assert compare(chain[top], copy) and compare(active, view_before)
    assert_view(chain[top], top)
    assert_view(active, 4)
    assert check_clean(chain[top])
    others_unchanged(sums, tree_checksums(tmp_path), chain[top])


def test_plan_json_says_pull_and_carries_the_commit_alternative(chain: list[Path]) -> None:
    result = cli("plan", "--pull", "--json", str(chain[-1]), "--base", str(chain[1]))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["operation"] == "pull"
    assert document["removed"] == [str(chain[3]), str(chain[2])]
    assert document["at_risk"] == [] and document["base"] == str(chain[1])
    assert document["alternative"]["operation"] == "commit"
    assert document["alternative"]["base"] == str(chain[2])
    assert document["steps"][0][1:3] == ["rebase", "-f"]
    commit = json.loads(cli("plan", "--json", str(chain[-1])).stdout)
    assert commit["operation"] == "commit" and commit["alternative"]["operation"] == "pull"


def test_delete_removes_only_what_nothing_else_uses(
    chain: list[Path], chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    sibling = chain_builder.overlay("sibling.qcow2", chain[1])
    write(sibling, 0x77, 40 * MiB, MiB)
    sibling_view = copy_before(sibling, tmp_path)
    view = copy_before(chain[-1], tmp_path)
    result = cli("pull", "--yes", "--delete", str(chain[-1]))
    assert result.returncode == 0, result.stderr
    # snap3 and snap2 only served active; snap1 and base still carry the sibling.
    assert not chain[3].exists() and not chain[2].exists()
    assert chain[1].exists() and chain[0].exists()
    assert backing_name(chain[-1]) is None
    assert compare(chain[-1], view) and compare(sibling, sibling_view)


def test_keep_relative_across_directories(tmp_path: Path) -> None:
    builder = ChainBuilder(tmp_path)
    pool = builder.chain(["pool/base.qcow2", "pool/mid.qcow2"])
    active = builder.overlay("vm/active.qcow2", pool[-1])
    write(active, 0x5A, 3 * MiB, MiB)
    view = copy_before(active, tmp_path)
    result = cli("pull", "--yes", "--keep-relative", str(active), "--base", str(pool[0]))
    assert result.returncode == 0, result.stderr
    assert backing_name(active) == "../pool/base.qcow2"
    assert compare(active, view)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--top", "nowhere.qcow2"], "could not find image"),
        (["--top", "snap2.qcow2", "--base", "snap3.qcow2"], "beneath"),
        (["--base", "active.qcow2"], "beneath"),
        (["--base", "snap3.qcow2"], "nothing to pull"),
        (["--top", "base.qcow2"], "has no backing file"),
        (["--rate", "1000"], "no bandwidth limit"),
    ],
)
def test_refused_pulls_change_no_file(
    chain: list[Path], tmp_path: Path, options: list[str], message: str
) -> None:
    sums = tree_checksums(tmp_path)
    result = cli("pull", "--yes", str(chain[-1]), *options, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert tree_checksums(tmp_path) == sums


class CancelOnFirstProgress(RecordingSink):
    """Cancels the job the first time qemu-img reports progress: deterministic, not timed."""

    def __init__(self, cancel: CancelToken) -> None:
        super().__init__()
        self.cancel = cancel

    def advanced(self, done: int, total: int, phase: str) -> None:
        super().advanced(done, total, phase)
        if phase == "pull":
            self.cancel.cancel()


def test_cancel_mid_pull_then_rerun_completes(tmp_path: Path) -> None:
    builder = ChainBuilder(tmp_path)
    base, snap, active = builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"], size="512M")
    write(snap, 0x3C, 64 * MiB, 256 * MiB)
    before = copy_before(active, tmp_path)
    request = CommitRequest(image=str(active), operation=Operation.PULL)
    result = plan(open_graph(str(active)), request)
    cancel = CancelToken()
    sink = CancelOnFirstProgress(cancel)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_plan(result, sink, cancel)
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], CancelledError), errors
    assert "reads correctly" in errors[0].state or "Nothing was written" in errors[0].state
    # top is still on its old chain, and reads exactly as before (qemu-img was killed, so
    # clusters it had allocated may leak: harmless, and check finds no corruption).
    assert backing_name(active) == "snap.qcow2"
    # Killed mid-write, qemu-img may leave leaked clusters in top: no byte of its view changes.
    assert compare(active, before) and check_not_corrupt(active)
    rerun = cli("pull", "--yes", str(active))
    assert rerun.returncode == 0, rerun.stderr
    assert backing_name(active) is None
    assert compare(active, before) and check_clean(base)


def test_progress_is_streamed_from_qemu_img_rebase(tmp_path: Path) -> None:
    builder = ChainBuilder(tmp_path)
    _, snap, active = builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"], size="256M")
    write(snap, 0x3C, 0, 128 * MiB)
    result = plan(open_graph(str(active)), CommitRequest(image=str(active), operation="pull"))
    sink = RecordingSink()
    run_plan(result, sink, CancelToken())
    pulled = [done for done, _, phase in sink.progress if phase == "pull"]
    assert len(pulled) >= 5 and pulled == sorted(pulled)
    assert pulled[-1] == result.bytes_to_copy
    assert sink.outcome is not None and "standalone" in sink.outcome[1]
    assert not os.path.exists(os.path.join(os.environ["BACKCHAIN_STATE_DIR"], "jobs", "x"))
