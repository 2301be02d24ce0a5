"""Build the real AppImage with packaging/build-appimage.sh, then run it on a fresh demo chain."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchain import __version__
from backchain.engines.demo import make_demo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SIZE_LIMIT = 90 * 1000 * 1000  # the target: under 90 MB


@pytest.fixture(scope="module")
def appimage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("appimage-build")
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(
        [str(ROOT / "packaging" / "build-appimage.sh"), "--work", str(work), "--out",
         str(work / "out")],
        check=True,
        env=env,
        timeout=1500,
    )  # fmt: skip
    image = work / "out" / f"Backchain-{__version__}-x86_64.AppImage"
    assert image.is_file()
    return image


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Path]:
    active = Path(make_demo(str(tmp_path / "demo")))
    before = _digests(active.parent)
    yield active
    # Reading and planning change nothing on disk.
    assert _digests(active.parent) == before


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPIMAGE")}
    env.update(QT_QPA_PLATFORM="offscreen", TMPDIR="/tmp")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _host_json(args: list[str], cwd: Path) -> object:
    out = _run([sys.executable, "-m", "backchain", *args], cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_appimage_is_a_small_type2_image(appimage: Path) -> None:
    assert appimage.stat().st_size < SIZE_LIMIT
    head = appimage.read_bytes()[:16]
    assert head[:4] == b"\x7fELF" and head[8:11] == b"AI\x02"
    out = _run([str(appimage), "--appimage-version"], appimage.parent)
    assert out.returncode == 0 and out.stdout.strip()


def test_chain_json_matches_the_installed_cli(appimage: Path, demo: Path) -> None:
    out = _run(
        [str(appimage), "--appimage-extract-and-run", "chain", "--json", str(demo)], demo.parent
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == _host_json(["chain", "--json", str(demo)], demo.parent)
    paths = [layer["path"] for layer in got["chain"]]
    assert paths[0] == str(demo) and paths[-1].endswith("base.qcow2")


def test_plan_json_matches_the_installed_cli(appimage: Path, demo: Path) -> None:
    out = _run(
        [str(appimage), "--appimage-extract-and-run", "plan", "--json", str(demo)], demo.parent
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == _host_json(["plan", "--json", str(demo)], demo.parent)
    assert got["top"] == str(demo) and got["base"].endswith("base.qcow2")


@pytest.mark.parametrize("mode", ["fuse", "extract-and-run"])
def test_gui_self_test_offscreen(appimage: Path, tmp_path: Path, mode: str) -> None:
    runtime_args = ["--appimage-extract-and-run"] if mode == "extract-and-run" else []
    out = _run([str(appimage), *runtime_args, "--self-test"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "self-test: ok" in out.stdout
    # The FUSE mount worked here, so no fallback notice.
    assert "FUSE is not available" not in out.stderr


def test_payload_has_desktop_integration_and_no_unused_qt(appimage: Path, tmp_path: Path) -> None:
    out = _run([str(appimage), "--appimage-extract"], tmp_path)
    assert out.returncode == 0, out.stderr
    root = tmp_path / "squashfs-root"
    for name in ["AppRun", "backchain.desktop", "backchain.svg", ".DirIcon",
                 "usr/share/metainfo/io.github.backchain.Backchain.metainfo.xml",
                 "usr/share/applications/backchain.desktop",
                 "usr/share/icons/hicolor/256x256/apps/backchain.png",
                 "usr/lib/backchain/_internal/backchain/resources/backchain.svg"]:  # fmt: skip
        assert (root / name).exists(), name
    check = subprocess.run(
        ["desktop-file-validate", str(root / "backchain.desktop")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    bundle = root / "usr/lib/backchain/_internal"
    dangling = [str(p) for p in bundle.rglob("*") if p.is_symlink() and not p.exists()]
    assert dangling == []
    libs = {p.name for p in bundle.rglob("libQt6*")}
    assert "libQt6Widgets.so.6" in libs
    for unused in ["libQt6Qml.so.6", "libQt6Quick.so.6", "libQt6Network.so.6", "libQt6Pdf.so.6"]:
        assert unused not in libs


def _glibc_versions(path: Path) -> set[tuple[int, ...]]:
    out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True).stdout
    return {tuple(int(n) for n in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out)}


def test_bundle_runs_on_glibc_2_35(appimage: Path, tmp_path: Path) -> None:
    # Ubuntu 22.04 has glibc 2.35; the build host's libstdc++ (2.36) must stay out.
    out = _run([str(appimage), "--appimage-extract"], tmp_path)
    assert out.returncode == 0, out.stderr
    too_new = []
    for path in (tmp_path / "squashfs-root").rglob("*"):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            if any(v > (2, 35) for v in _glibc_versions(path)):
                too_new.append(path.name)
    assert too_new == []
    assert max(_glibc_versions(appimage)) <= (2, 35)  # the runtime itself
