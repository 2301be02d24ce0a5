"""The command line as a user meets it: confirmation, the terminal progress bar, exit statuses."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
from pathlib import Path

from tests.images import ChainBuilder, MiB, backing_name, compare, snapshot_copy, tree_checksums
from tests.images import backchain as cli
from tests.images import write as write_pattern


def test_commit_asks_first_and_no_changes_nothing(chain_builder: ChainBuilder,
                                                  tmp_path: Path) -> None:  # fmt: skip
    _, snap, active = chain_builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"])
    sums = tree_checksums(tmp_path)
    declined = cli("commit", str(active), "--top", str(snap), stdin="n\n")
    assert declined.returncode == 2
    assert "Run this commit? [y/N]" in declined.stdout and "qemu-img commit" in declined.stdout
    assert "Nothing was changed." in declined.stderr
    assert tree_checksums(tmp_path) == sums
    accepted = cli("commit", str(active), "--top", str(snap), stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert backing_name(active) == "base.qcow2"


def test_commit_draws_a_progress_bar_on_a_terminal(chain_builder: ChainBuilder,
                                                   tmp_path: Path) -> None:  # fmt: skip
    _, snap, active = chain_builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"])
    write_pattern(snap, 0x42, 0, 48 * MiB)
    before = snapshot_copy(active, tmp_path / "before.qcow2")
    pid, fd = pty.fork()
    if pid == 0:  # the child: backchain with its stdio on the pseudo-terminal
        argv = ["-m", "backchain", "commit", "--yes", "--rate", str(32 * MiB), str(active)]
        os.execvp(sys.executable, [sys.executable, *argv, "--top", str(snap)])
    screen = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    _, status = os.waitpid(pid, 0)
    text = screen.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    frames = [frame for frame in text.split("\r") if frame.startswith("[")]
    assert len(frames) >= 3, text
    assert "100%" in frames[-1] and "commit" in frames[0]
    assert "Committed snap.qcow2 into base.qcow2" in text
    assert compare(active, before)


def test_plan_refusal_and_usage_errors_exit_2(chain_builder: ChainBuilder) -> None:
    _, active = chain_builder.chain(["base.qcow2", "active.qcow2"])
    assert cli("plan", str(active), "--top", "/nonexistent.qcow2").returncode == 2
    assert cli("plan", str(active), "--no-such-option").returncode == 2
    assert cli("chain").returncode == 2


def test_chain_json_lists_layers_top_first_with_extents(chain_builder: ChainBuilder) -> None:
    base, active = chain_builder.chain(["base.qcow2", "active.qcow2"])
    other = chain_builder.overlay("other.qcow2", base)
    document = json.loads(cli("chain", "--json", str(active)).stdout)
    assert [layer["path"] for layer in document["chain"]] == [str(active), str(base)]
    top = document["chain"][0]
    assert top["backing_name"] == "base.qcow2" and top["backing_relative"] is True
    assert top["extents"] == [[MiB, MiB], [33 * MiB, 2 * MiB]]
    assert [layer["path"] for layer in document["others"]] == [str(other)]


def test_demo_builds_a_tree_with_a_sibling_and_a_branch(tmp_path: Path) -> None:
    result = cli("demo", str(tmp_path / "demo"))
    assert result.returncode == 0
    active = result.stdout.strip()
    document = json.loads(cli("chain", "--json", active).stdout)
    assert len(document["chain"]) == 4
    assert all(layer["allocated"] for layer in document["chain"])
    assert sorted(os.path.basename(o["path"]) for o in document["others"]) == [
        "branch.qcow2", "other.qcow2"]  # fmt: skip


def test_chain_marks_what_a_finished_commit_left_invalid_or_at_risk(tmp_path: Path) -> None:
    """The default commit leaves the chain unchanged on disk; the ledger says what changed."""
    builder = ChainBuilder(tmp_path)
    base, snap1, snap2, active = builder.chain(
        ["base.qcow2", "snap1.qcow2", "snap2.qcow2", "active.qcow2"]
    )
    other = builder.overlay("other.qcow2", base)
    done = cli("commit", "--yes", "--top", str(snap2), str(active))
    assert done.returncode == 0, done.stderr
    shown = cli("chain", "--json", str(active))
    document = json.loads(shown.stdout)
    marks = {x["path"]: x["ledger"] for x in document["chain"] + document["others"]}
    assert marks[str(snap1)].startswith("invalid since commit into base.qcow2 on ")
    assert marks[str(snap2)].startswith("stale since commit into base.qcow2")
    assert marks[str(other)].startswith("at risk since commit into base.qcow2")
    assert marks[str(base)] is None and marks[str(active)] is None
    write_pattern(other, 0x77, 0, MiB)  # a changed file drops out of the ledger
    again = json.loads(cli("chain", "--json", str(active)).stdout)
    assert {x["path"]: x["ledger"] for x in again["others"]}[str(other)] is None


def test_chain_text_names_each_layers_internal_snapshots(chain_builder: ChainBuilder) -> None:
    import subprocess

    paths = chain_builder.chain(["base.qcow2", "active.qcow2"])
    for name in ("installed", "upgraded"):
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(paths[0])], check=True)
    lines = cli("chain", str(paths[-1])).stdout.splitlines()
    assert lines[1].endswith("[2 internal snapshots: installed, upgraded]"), lines
    assert "internal" not in lines[0]
