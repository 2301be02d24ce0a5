"""The one lifecycle: what each engine used to get wrong, now tested for real (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backchain.core.model import CommitRequest, StepKind
from backchain.engines.files.scan import open_graph
from backchain.engines.process import QEMU_IMG_ENV
from backchain.engines.qemu_img.steps import commit_steps
from backchain.engines.registry import make_plan
from tests.faults.helpers import COMMIT_SNAP2_DELETE, Scene, record, wait_for
from tests.helpers.checks import luks
from tests.images import MiB, checksums, create, run, tree_checksums, write
from tests.qemu_vm import running_vm


def _qemu_img_children_on(path: Path) -> list[int]:
    """Every qemu-img process whose command line names ``path``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"qemu-img" and str(path).encode() in argv:
            found.append(int(entry))
    return found


def _fraction(scene: Scene) -> float:
    jobs = scene.jobs()
    return float(jobs[0]["fraction"]) if jobs and jobs[0]["current"] == 0 else 0.0


@pytest.mark.slow
def test_killing_backchains_process_group_leaves_no_qemu_img_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    scene = Scene.build(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backchain", *COMMIT_SNAP2_DELETE],
        cwd=scene.dir, env=scene.env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: _fraction(scene) > 0.1, what="the copy to pass 10%")
    assert _qemu_img_children_on(scene.p("snap2.qcow2")), "no qemu-img child was running"
    os.killpg(proc.pid, signal.SIGKILL)  # what closing the terminal does to the whole group
    proc.wait(timeout=30)
    wait_for(lambda: not _qemu_img_children_on(scene.p("snap2.qcow2")), seconds=10,
             what="qemu-img to die with Backchain")  # fmt: skip
    listed = scene.backchain("resume", "--json")
    jobs = json.loads(listed.stdout)
    assert len(jobs) == 1 and "was interrupted" in jobs[0]["message"], listed.stdout
    rerun = scene.backchain("resume", "--yes", jobs[0]["id"])
    assert rerun.returncode == 0, rerun.stderr
    assert "running QEMU" not in rerun.stderr
    assert scene.committed_correctly() and scene.unchanged_outside_plan()
    record("children die with Backchain (process group killed)", True, scene.active_lost())


def test_a_step_that_wrote_nothing_says_so_and_leaves_no_record(tmp_path: Path) -> None:
    """Base made immutable after the preflight: qemu-img cannot open it, and nothing changed."""
    scene = Scene.build(tmp_path)
    marker = tmp_path / "paused"
    proc = scene.start(*COMMIT_SNAP2_DELETE, BACKCHAIN_FAULT_PAUSE="before:commit",
                       BACKCHAIN_FAULT_PAUSE_FILE=str(marker))  # fmt: skip
    wait_for(marker.exists, what="the pause before the commit step")
    sums = tree_checksums(scene.dir)
    run(["chattr", "+i", str(scene.base)])
    try:
        marker.unlink()
        _out, err = proc.communicate(timeout=120)
    finally:
        run(["chattr", "-i", str(scene.base)])
    assert proc.returncode == 1, err
    assert "Nothing was written" in err and "base.qcow2" in err, err
    assert "may be partly written" not in err
    assert scene.jobs() == []
    assert tree_checksums(scene.dir) == sums
    record("nothing written: no interrupted record", True, scene.active_lost())


def test_luks_layer_without_a_secret_is_refused_at_plan_time(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret")
    base = luks(tmp_path / "base.qcow2", f"secret,id=sec0,file={secret}")
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    sums = checksums([base, top])
    result = subprocess.run([sys.executable, "-m", "backchain", "commit", "--yes", str(top)],
                            capture_output=True, text=True, cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "base.qcow2 is encrypted" in result.stderr and "--object secret" in result.stderr
    assert checksums([base, top]) == sums


def test_a_file_protocol_backing_name_is_refused_at_plan_time(tmp_path: Path) -> None:
    """``file:base.qcow2`` is read relative to the current directory, and commit -b cannot
    match it: refused before anything runs, with the rebase that fixes it."""
    base = create(tmp_path / "base.qcow2", "16M")
    write(base, 0x11, 0, MiB)
    top = create(tmp_path / "top.qcow2", backing="file:base.qcow2", cwd=tmp_path)
    run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x22 {MiB} {MiB}", str(top)], cwd=tmp_path)
    sums = checksums([base, top])
    result = subprocess.run([sys.executable, "-m", "backchain", "commit", "--yes", str(top)],
                            capture_output=True, text=True, cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "protocol prefix" in result.stderr
    assert "qemu-img rebase -u -b base.qcow2" in result.stderr
    assert checksums([base, top]) == sums
    view = ["qemu-io", "-r", "-f", "qcow2", "-c", f"read -P 0x11 0 {MiB}",
            "-c", f"read -P 0x22 {MiB} {MiB}", str(top)]  # fmt: skip
    assert "Pattern verification failed" not in run(view, cwd=tmp_path)


def test_every_qemu_img_step_runs_the_configured_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = create(tmp_path / "base.qcow2", "16M")
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    graph = open_graph(str(top))
    plan = make_plan(graph, CommitRequest(image=str(top), top=str(mid), delete=True))
    monkeypatch.setenv(QEMU_IMG_ENV, "/opt/qemu/bin/qemu-img")
    steps = commit_steps(plan, graph)
    kinds = [s.kind for s in steps]
    assert kinds == [StepKind.COMMIT, StepKind.REBASE, StepKind.VERIFY, StepKind.DELETE]
    assert [s.argv[0] for s in steps[:3]] == ["/opt/qemu/bin/qemu-img"] * 3
    assert base.exists()


@pytest.mark.slow
def test_a_qmp_job_running_in_one_process_is_running_not_interrupted_in_another(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    images = [tmp_path / n for n in ("base.qcow2", "mid.qcow2", "top.qcow2")]
    create(images[0], "256M")
    create(images[1], backing="base.qcow2", cwd=tmp_path)
    create(images[2], backing="mid.qcow2", cwd=tmp_path)
    write(images[1], 0x22, 0, 64 * MiB)
    env = dict(os.environ, BACKCHAIN_STATE_DIR=str(state))
    with running_vm(images, tmp_path) as vm:
        first = subprocess.Popen(
            [sys.executable, "-m", "backchain", "commit", "--qmp", vm.socket, "--top", "mid",
             "--base", "base", "--rate", str(4 * MiB), "--yes"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        jobs = state / "jobs"
        wait_for(lambda: jobs.is_dir() and any(jobs.iterdir()), what="the first job's record")
        seen = subprocess.run(
            [sys.executable, "-m", "backchain", "resume", "--json"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert json.loads(seen.stdout) == [], seen.stdout  # running, so not "interrupted"
        # QEMU takes one QMP client at a time; a second Backchain that reaches the same files
        # offline must name the job that holds them, not "a running QEMU".
        second = subprocess.run(
            [sys.executable, "-m", "backchain", "commit", str(images[2]), "--top",
             str(images[1]), "--yes"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert f"another Backchain process {first.pid}" in second.stderr, second.stderr
        assert "running QEMU" not in second.stderr
        first.terminate()  # cancels the job cleanly (SIGTERM is Backchain's Cancel)
        _out, err = first.communicate(timeout=60)
        assert first.returncode == 1 and "cancelled" in err, err
        deadline = time.monotonic() + 10
        while any(jobs.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(jobs.iterdir()), "a cancelled online job leaves nothing to finish"


@pytest.mark.slow
def test_resuming_an_active_commit_keeps_the_overlay_as_asked_without_asking_again(
    tmp_path: Path,
) -> None:
    """The journal keeps on_ready: a re-run from the CLI neither asks Pivot nor pivots."""
    state = tmp_path / "state"
    images = [tmp_path / n for n in ("base.qcow2", "top.qcow2")]
    create(images[0], "256M")
    create(images[1], backing="base.qcow2", cwd=tmp_path)
    write(images[1], 0x33, 0, 48 * MiB)
    env = dict(os.environ, BACKCHAIN_STATE_DIR=str(state))
    with running_vm(images, tmp_path, names=["base", "top"]) as vm:
        first = subprocess.Popen(
            [sys.executable, "-m", "backchain", "commit", "--qmp", vm.socket, "--active",
             "--keep-overlay", "--rate", str(4 * MiB), "--yes"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        jobs = state / "jobs"
        wait_for(lambda: jobs.is_dir() and any(jobs.iterdir()), what="the job's record")
        time.sleep(0.5)  # let QEMU start copying
        first.kill()
        first.wait(timeout=30)
        record_path = next(jobs.iterdir())
        document = json.loads(record_path.read_text())
        assert document["record"]["plan"]["request"]["on_ready"] == "keep-overlay"
        rerun = subprocess.run(
            [sys.executable, "-m", "backchain", "resume", "--yes", document["id"]],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr
        assert "stays the active layer" in rerun.stdout, rerun.stdout
        blocks = vm.execute("query-block")
        inserted = [b["inserted"] for b in blocks if b.get("inserted")]  # type: ignore[union-attr]
        assert inserted and inserted[0]["node-name"] == "top"  # not pivoted
        assert not any(jobs.iterdir())
