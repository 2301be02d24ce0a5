"""Our AppImage type-2 runtime, built from packaging/runtime and run on a small real payload."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPRUN = """#!/bin/sh
echo "APPDIR=$APPDIR"
echo "APPIMAGE=$APPIMAGE"
echo "ARGV0=$ARGV0"
echo "ARGS=$*"
cat "$APPDIR/data/payload.txt"
exit 7
"""


def _leftovers() -> set[str]:
    return {n for n in os.listdir("/tmp") if n.startswith((".mount_", "appimage_extracted_"))}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("runtime")
    subprocess.run(
        ["make", "-s", "-C", str(ROOT / "packaging" / "runtime"), f"BUILD={build}"], check=True
    )
    return build / "runtime"


@pytest.fixture(scope="module")
def appimage(runtime: Path) -> Iterator[Path]:
    # World-readable, so that the unprivileged-user test can run it (pytest's tmp is 0700).
    top = Path(tempfile.mkdtemp(prefix="bc-runtime-", dir="/tmp"))
    top.chmod(0o755)
    appdir = top / "AppDir"
    (appdir / "data").mkdir(parents=True)
    (appdir / "AppRun").write_text(APPRUN)
    (appdir / "AppRun").chmod(0o755)
    (appdir / "data" / "payload.txt").write_text("payload-bytes-42\n")
    (appdir / "data" / "secret.txt").write_text("x")
    (appdir / "data" / "secret.txt").chmod(0o600)
    (appdir / "link").symlink_to("data/payload.txt")
    sqfs = top / "payload.sqfs"
    subprocess.run(
        ["mksquashfs", str(appdir), str(sqfs), "-root-owned", "-noappend", "-comp", "zstd",
         "-quiet", "-no-progress"],
        check=True,
    )  # fmt: skip
    image = top / "Test.AppImage"
    image.write_bytes(runtime.read_bytes() + sqfs.read_bytes())
    image.chmod(0o755)
    yield image
    shutil.rmtree(top)


def _run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("APPIMAGE")}
    full_env["TMPDIR"] = "/tmp"  # where the runtime's mount points and extractions go
    full_env.update(env or {})
    return subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)


def test_offset_is_the_runtime_size(runtime: Path, appimage: Path) -> None:
    out = _run([str(appimage), "--appimage-offset"], appimage.parent)
    assert out.returncode == 0
    assert int(out.stdout) == runtime.stat().st_size


def test_version_and_magic(appimage: Path) -> None:
    out = _run([str(appimage), "--appimage-version"], appimage.parent)
    assert out.returncode == 0 and "type 2" in out.stdout
    assert appimage.read_bytes()[8:11] == b"AI\x02"


def test_fuse_mount_runs_apprun_with_env_and_exit_code(appimage: Path) -> None:
    before = _leftovers()
    out = _run(["./Test.AppImage", "one", "two words"], appimage.parent)
    assert out.returncode == 7, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("APPDIR=/tmp/.mount_Test.A")
    assert lines[1:4] == [f"APPIMAGE={appimage}", "ARGV0=./Test.AppImage", "ARGS=one two words"]
    assert lines[4] == "payload-bytes-42"
    assert out.stderr == ""
    assert _leftovers() == before  # unmounted and removed


@pytest.mark.parametrize("how", ["option", "env"])
def test_extract_and_run_cleans_up(appimage: Path, how: str) -> None:
    before = _leftovers()
    if how == "option":
        out = _run([str(appimage), "--appimage-extract-and-run", "arg"], appimage.parent)
    else:
        out = _run([str(appimage), "arg"], appimage.parent, {"APPIMAGE_EXTRACT_AND_RUN": "1"})
    assert out.returncode == 7, out.stderr
    assert out.stdout.splitlines()[0].startswith("APPDIR=/tmp/appimage_extracted_")
    assert "ARGS=arg" in out.stdout and "payload-bytes-42" in out.stdout
    assert out.stderr == ""
    assert _leftovers() == before


def test_extract_keeps_modes_and_symlinks(appimage: Path, tmp_path: Path) -> None:
    out = _run([str(appimage), "--appimage-extract"], tmp_path)
    assert out.returncode == 0, out.stderr
    root = tmp_path / "squashfs-root"
    assert (root / "data" / "payload.txt").read_text() == "payload-bytes-42\n"
    assert os.readlink(root / "link") == "data/payload.txt"
    assert stat.S_IMODE((root / "AppRun").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "data" / "secret.txt").stat().st_mode) == 0o600


def test_extract_with_a_pattern_takes_only_matches(appimage: Path, tmp_path: Path) -> None:
    out = _run([str(appimage), "--appimage-extract", "*/payload.txt"], tmp_path)
    assert out.returncode == 0, out.stderr
    root = tmp_path / "squashfs-root"
    assert (root / "data" / "payload.txt").exists()
    assert not (root / "AppRun").exists() and not (root / "data" / "secret.txt").exists()


def test_failed_mount_falls_back_with_one_line(appimage: Path) -> None:
    # /dev/null in place of /dev/fuse opens fine but cannot be mounted: the mount itself fails.
    before = _leftovers()
    out = _run(
        ["unshare", "-m", "sh", "-c", f"mount --bind /dev/null /dev/fuse && exec {appimage} x"],
        appimage.parent,
    )
    assert out.returncode == 7, out.stderr
    assert "payload-bytes-42" in out.stdout
    assert len(out.stderr.splitlines()) == 1
    assert "FUSE is not available" in out.stderr
    assert _leftovers() == before


def test_unprivileged_user_without_fuse_device_falls_back(appimage: Path, tmp_path: Path) -> None:
    # A root-only /dev/fuse, as many machines have, for the user "nobody".
    blocker = Path(tempfile.mkdtemp(dir="/tmp")) / "fuse"
    blocker.touch(mode=0o600)
    try:
        out = _run(
            ["unshare", "-m", "sh", "-c",
             f"mount --bind {blocker} /dev/fuse && exec setpriv --reuid=65534 --regid=65534 "
             f"--clear-groups {appimage} y"],
            appimage.parent,
        )  # fmt: skip
    finally:
        shutil.rmtree(blocker.parent)
    assert out.returncode == 7, out.stderr
    assert "ARGS=y" in out.stdout and "payload-bytes-42" in out.stdout
    assert out.stderr.count("\n") == 1 and "FUSE is not available" in out.stderr


def test_unknown_runtime_option_is_refused(appimage: Path) -> None:
    out = _run([str(appimage), "--appimage-bogus"], appimage.parent)
    assert out.returncode == 1
    assert "unknown runtime option --appimage-bogus" in out.stderr


def test_runtime_without_payload_says_so(runtime: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copy(runtime, bare)
    out = _run([str(bare)], tmp_path)
    assert out.returncode == 1
    assert "no squashfs payload" in out.stderr and str(bare) in out.stderr
