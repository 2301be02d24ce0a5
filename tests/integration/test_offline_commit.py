"""Offline commits with real qemu-img: patterns read back, chains checked, nothing else touched."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from backchain.core.errors import CancelledError
from backchain.core.model import CommitRequest
from backchain.engines.files.facts import lock_holder
from backchain.engines.files.scan import open_graph
from backchain.engines.progress import CancelToken, RecordingSink
from backchain.engines.registry import make_plan as plan
from backchain.engines.runner import run_plan
from tests.helpers.checks import raw_view
from tests.images import (
    ChainBuilder,
    MiB,
    backing_name,
    chain_info,
    check_clean,
    compare,
    reads,
    run,
    snapshot_copy,
    tree_checksums,
    write,
)
from tests.images import backchain as cli

NAMES = ["base.qcow2", "snap1.qcow2", "snap2.qcow2", "snap3.qcow2", "active.qcow2"]


def chain_names(image: Path) -> list[str]:
    return [os.path.basename(str(entry["filename"])) for entry in chain_info(image)]


def expected_view(top_index: int) -> list[tuple[int, int, int]]:
    """(pattern, offset, length) that the view of layer ``top_index`` shows (ChainBuilder data)."""
    view = [(ChainBuilder.pattern(i), i * MiB, MiB) for i in range(top_index + 1)]
    view += [(ChainBuilder.pattern(i), (32 + i) * MiB, MiB) for i in range(top_index + 1)]
    view.append((ChainBuilder.pattern(top_index), (33 + top_index) * MiB, MiB))
    return view


def assert_view(image: Path, top_index: int) -> None:
    for pattern, offset, length in expected_view(top_index):
        assert reads(image, pattern, offset, length), (image, hex(pattern), offset)


@pytest.fixture
def chain(chain_builder: ChainBuilder) -> list[Path]:
    return chain_builder.chain(NAMES)


CASES = {
    # name: (cli options, index of top, index of base, active's chain afterwards)
    "top->base": ([], 4, 0, NAMES[::-1]),
    "mid->mid": (
        ["--top", "snap3.qcow2", "--base", "snap1.qcow2"],
        3,
        1,
        ["active.qcow2", "snap1.qcow2", "base.qcow2"],
    ),
    "top->mid": (["--base", "snap2.qcow2"], 4, 2, NAMES[::-1]),
    "mid->base": (["--top", "snap2.qcow2"], 2, 0, ["active.qcow2", "snap3.qcow2", "base.qcow2"]),
    "default shallow": (["--shallow"], 4, 3, NAMES[::-1]),
    "shallow mid": (
        ["--top", "snap2.qcow2", "--shallow"],
        2,
        1,
        ["active.qcow2", "snap3.qcow2", "snap1.qcow2", "base.qcow2"],
    ),
    "shallow with its base": (
        ["--top", "snap3.qcow2", "--base", "snap2.qcow2", "--shallow"],
        3,
        2,
        ["active.qcow2", "snap2.qcow2", "snap1.qcow2", "base.qcow2"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_commit_keeps_the_active_view_and_fills_base(
    case: str, chain: list[Path], tmp_path: Path
) -> None:
    options, top_index, base_index, after = CASES[case]
    active, base, top = chain[-1], chain[base_index], chain[top_index]
    before = snapshot_copy(active, tmp_path / "before-view.qcow2")
    top_view = snapshot_copy(top, tmp_path / "top-view.qcow2")
    untouched = [p for i, p in enumerate(chain) if i < base_index or i > top_index + 1]
    sums = {p: tree_checksums(p.parent)[str(p)] for p in untouched}

    result = cli("commit", "--yes", "--json", str(active), *options, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    assert compare(active, before), "the active view changed"
    assert compare(base, top_view), "base does not hold top's view"
    assert chain_names(active) == after
    assert_view(active, 4)
    assert_view(base, top_index)
    for path in chain:
        assert check_clean(path), path
    assert {p: tree_checksums(p.parent)[str(p)] for p in untouched} == sums
    if top_index < 4:
        assert backing_name(chain[top_index + 1]) == os.path.relpath(
            base, chain[top_index + 1].parent
        )


def test_equivalent_requests_plan_the_same_steps(chain: list[Path], tmp_path: Path) -> None:
    a = cli("plan", "--json", str(chain[-1]), cwd=tmp_path).stdout
    b = cli(
        "plan",
        "--json",
        str(chain[-1]),
        "--top",
        str(chain[-1]),
        "--base",
        str(chain[0]),
        cwd=tmp_path,
    ).stdout
    assert a == b and '"steps"' in a
    c = cli("plan", "--json", str(chain[-1]), "--shallow", cwd=tmp_path).stdout
    d = cli("plan", "--json", str(chain[-1]), "--base", str(chain[3]), cwd=tmp_path).stdout
    assert c == d


def test_plan_json_has_the_contract_keys(chain: list[Path], tmp_path: Path) -> None:
    import json

    result = cli("plan", "--json", str(chain[-1]), "--top", str(chain[2]))
    document = json.loads(result.stdout)
    for key in (
        "engine",
        "top",
        "base",
        "merged",
        "invalid",
        "stale",
        "rebased",
        "at_risk",
        "deleted",
        "bytes_to_copy",
        "steps",
    ):
        assert key in document
    assert document["engine"] == "qemu-img"
    assert document["merged"] == [str(chain[2]), str(chain[1])]
    assert document["rebased"] == [{"image": str(chain[3]), "backing": str(chain[0])}]
    assert document["bytes_to_copy"] == 5 * MiB  # [1,2)+[2,3) MiB and [33,36) MiB
    assert all(isinstance(step, list) for step in document["steps"])


ERRORS = {
    "top not in chain": (["--top", "elsewhere.qcow2"], "could not find image"),
    "base above top": (["--top", "snap1.qcow2", "--base", "snap3.qcow2"], "beneath"),
    "base is top": (["--top", "snap2.qcow2", "--base", "snap2.qcow2"], "beneath"),
    "top is bottom": (["--top", "base.qcow2"], "could not find base image in chain"),
    "shallow top is bottom": (["--top", "base.qcow2", "--shallow"], "has no backing file"),
    "shallow far base": (["--shallow", "--base", "snap1.qcow2"], "is not immediately below"),
    "delete blocked": (["--delete"], "still depends on it"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_refused_requests_change_no_file(
    case: str, chain: list[Path], chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    options, message = ERRORS[case]
    (tmp_path / "elsewhere.qcow2").write_bytes(b"")
    chain_builder.overlay("branch.qcow2", chain[2])
    sums = tree_checksums(tmp_path)
    result = cli("commit", "--yes", str(chain[-1]), *options, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert tree_checksums(tmp_path) == sums


def test_read_only_base_and_keep_relative_with_absolute_names_are_refused(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    base, snap, active = chain_builder.chain(["b.qcow2", "s.qcow2", "a.qcow2"], relative=False)
    sums = tree_checksums(tmp_path)
    result = cli("commit", "--yes", str(active), "--top", str(snap), "--keep-relative")
    assert result.returncode == 2 and "can't keep relative backing relationship" in result.stderr
    base.chmod(0o444)
    result = cli("commit", "--yes", str(active))
    assert result.returncode == 2 and "b.qcow2' is not writable" in result.stderr
    assert tree_checksums(tmp_path) == sums


def test_an_image_held_open_by_qemu_is_refused(chain: list[Path], tmp_path: Path) -> None:
    holder = subprocess.Popen(
        ["qemu-io", "-f", "qcow2", str(chain[-1])],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait for the holder's lock itself (F_GETLK asks without taking one), and fail clearly
        # if it never comes: a commit that runs because the lock was late proves nothing.
        deadline = time.monotonic() + 60
        while lock_holder(str(chain[-1])) is None:
            if holder.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"qemu-io never took the lock on {chain[-1]} (exit {holder.poll()})")
            time.sleep(0.02)
        sums = tree_checksums(tmp_path)
        result = cli("commit", "--yes", str(chain[-1]), "--top", str(chain[3]))
        assert result.returncode == 2
        assert "active.qcow2 is in use by a running QEMU" in result.stderr, result.stderr
        assert tree_checksums(tmp_path) == sums
    finally:
        holder.communicate(b"quit\n", timeout=10)


def test_too_little_free_space_is_refused(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)])
    try:
        builder = ChainBuilder(mount)
        base = builder.chain(["base.qcow2"], data=False)[0]
        big = ChainBuilder(tmp_path).overlay("big.qcow2", base, relative=False)
        write(big, 0x5A, 0, 16 * MiB)
        sums = tree_checksums(tmp_path)
        result = cli("commit", "--yes", str(big))
        assert result.returncode == 2 and "not enough free space" in result.stderr
        assert "base.qcow2" in result.stderr
        assert tree_checksums(tmp_path) == sums
    finally:
        run(["umount", str(mount)])


def view_array(image: Path, dest: Path) -> np.ndarray:
    """The whole view as an array of bytes, for counting the bytes that differ."""
    return np.frombuffer(raw_view(image, dest), dtype=np.uint8)


def test_predicted_bytes_at_risk_match_the_bytes_that_really_change(
    chain: list[Path], chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    other = chain_builder.overlay("other.qcow2", chain[0])
    write(other, 0x77, 33 * MiB, MiB // 2)
    branch = chain_builder.overlay("branch.qcow2", chain[1])
    write(branch, 0x88, 2 * MiB, 4 * MiB)
    graph = open_graph(str(chain[-1]))
    result = plan(graph, CommitRequest(image=str(chain[-1]), top=str(chain[3])))
    predicted = {os.path.basename(a.image): a.bytes for a in result.at_risk}
    # changed = [1,4) + [33,37) MiB; other hides [33,33.5); branch and snap1 hide [1,6)+[33,35).
    assert predicted == {"other.qcow2": 6 * MiB + MiB // 2, "branch.qcow2": 2 * MiB}
    before = {p: view_array(p, tmp_path / f"{p.name}.before") for p in (other, branch)}
    run_plan(result, RecordingSink(), CancelToken())
    for path, old in before.items():
        changed = int(np.count_nonzero(view_array(path, tmp_path / f"{path.name}.after") != old))
        assert changed == predicted[path.name]
    invalid = {os.path.basename(a.image): a.bytes for a in result.invalid}
    assert invalid == {"snap2.qcow2": 2 * MiB, "snap1.qcow2": 4 * MiB}


def test_delete_removes_merged_layers_after_verifying(chain: list[Path], tmp_path: Path) -> None:
    before = snapshot_copy(chain[-1], tmp_path / "before.qcow2")
    result = cli("commit", "--yes", str(chain[-1]), "--top", str(chain[3]), "--delete")
    assert result.returncode == 0, result.stderr
    assert not chain[3].exists() and not chain[2].exists() and not chain[1].exists()
    assert chain_names(chain[-1]) == ["active.qcow2", "base.qcow2"]
    assert compare(chain[-1], before)


def test_relative_names_across_directories_stay_relative(tmp_path: Path) -> None:
    builder = ChainBuilder(tmp_path)
    paths = builder.chain(
        ["pool/base.qcow2", "snaps/one/snap1.qcow2", "snaps/snap2.qcow2", "vm/active.qcow2"]
    )
    before = snapshot_copy(paths[-1], tmp_path / "before.qcow2")
    result = cli("commit", "--yes", "vm/active.qcow2", "--top", "snaps/snap2.qcow2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert backing_name(paths[-1]) == "../pool/base.qcow2"
    assert compare(paths[-1], before)


def test_cancel_mid_commit_then_rerun_completes(tmp_path: Path) -> None:
    builder = ChainBuilder(tmp_path)
    base, snap, active = builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"], size="256M")
    write(snap, 0x3C, 64 * MiB, 128 * MiB)
    before = snapshot_copy(active, tmp_path / "before.qcow2")
    result = plan(
        open_graph(str(active)), CommitRequest(image=str(active), top=str(snap), rate=32 * MiB)
    )
    cancel = CancelToken()
    sink = CancelOnFirstProgress(cancel)
    errors: list[BaseException] = []
    try:
        run_plan(result, sink, cancel)
    except CancelledError as err:
        errors.append(err)
    assert len(errors) == 1 and isinstance(errors[0], CancelledError)
    assert "Running the same commit again is safe" in errors[0].state
    assert 0 < sink.progress[-1][0] < sink.progress[-1][1]
    assert compare(active, before)
    assert backing_name(active) == "snap.qcow2"
    rerun = cli("commit", "--yes", str(active), "--top", str(snap))
    assert rerun.returncode == 0, rerun.stderr
    assert backing_name(active) == "base.qcow2"
    assert compare(active, before) and check_clean(base)


class CancelOnFirstProgress(RecordingSink):
    """Presses Cancel as soon as the copy reports its first bytes: no sleeping, no race."""

    def __init__(self, cancel: CancelToken) -> None:
        super().__init__()
        self.cancel = cancel

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Record, then cancel once some bytes were copied."""
        super().advanced(done, total, phase)
        if phase == "commit" and 0 < done < total:
            self.cancel.cancel()


def test_progress_is_streamed_from_qemu_img(tmp_path: Path) -> None:
    builder = ChainBuilder(tmp_path)
    _, snap, active = builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"], size="128M")
    write(snap, 0x3C, 0, 64 * MiB)
    result = plan(
        open_graph(str(active)), CommitRequest(image=str(active), top=str(snap), rate=64 * MiB)
    )
    sink = RecordingSink()
    run_plan(result, sink, CancelToken())
    commit = [done for done, _, phase in sink.progress if phase == "commit"]
    assert len(commit) >= 5 and commit == sorted(commit)
    assert commit[-1] == result.bytes_to_copy
    assert [kind for kind, _ in sink.events] == ["started", "step", "step", "finished"]


def test_virsh_keep_relative_on_an_active_commit_offline(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    """libvirt accepts RELATIVE on an active commit: no overlay of top has a link to keep."""
    base, snap, active = chain_builder.chain(["b.qcow2", "s.qcow2", "a.qcow2"], relative=False)
    result = cli("commit", "--yes", str(active), "--keep-relative")
    assert result.returncode == 0, result.stderr
    for index in range(3):
        assert reads(base, ChainBuilder.pattern(index), index * MiB, MiB)
    assert backing_name(snap) == str(base)  # nothing was re-pointed
