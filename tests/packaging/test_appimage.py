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
from tests.images import ChainBuilder
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
HOST_INSTALL = ["apt install libvirt-clients", "dnf install libvirt-client", "pacman -S libvirt",
                "zypper install libvirt-client"]  # fmt: skip


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


def test_appimage_is_a_type2_image(appimage: Path) -> None:
    # Its size (the target: under 90 MB) is a figure packaging/measure-appimage.sh reports.
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


# -- libvirt: the binding is bundled, the client library (libvirt.so.0) is the host's ------------


@pytest.fixture(scope="module")
def appdir(appimage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("appimage-extract")
    out = _run([str(appimage), "--appimage-extract"], work)
    assert out.returncode == 0, out.stderr
    return work / "squashfs-root"


def _host_libvirt() -> Path:
    """The file ld.so's cache gives for libvirt.so.0 on this machine."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"^\s*libvirt\.so\.0 \(libc6,x86-64\) => (\S+)$", cache, re.M)
    assert found, "libvirt0 is not installed on this machine"
    return Path(found.group(1))


def test_payload_carries_the_libvirt_binding_but_not_libvirt_so(appdir: Path) -> None:
    bundle = appdir / "usr/lib/backchain/_internal"
    names = {p.name for p in bundle.rglob("*")}
    binding = [n for n in names if n.startswith(("libvirtmod.cpython", "libvirtmod_qemu.cpython"))]
    assert len(binding) == 2, names
    client = ("libvirt.so", "libvirt-qemu.so", "libvirt-lxc.so", "libvirt-admin.so",
              "libxml2.so", "libgnutls.so", "libyajl.so", "libtirpc.so", "libssh.so",
              "libcurl-gnutls.so")  # fmt: skip
    assert sorted(n for n in names if n.startswith(client)) == []
    # With the bundle first on the path, as the bootloader sets it, the host's library is found.
    module = next(bundle.glob("libvirtmod.cpython*.so"))
    ldd = subprocess.run(["ldd", str(module)], capture_output=True, text=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=str(bundle)))  # fmt: skip
    assert ldd.returncode == 0 and "not found" not in ldd.stdout, ldd.stdout
    resolved = re.search(r"^\s*libvirt\.so\.0 => (\S+)", ldd.stdout, re.M)
    assert resolved and Path(resolved.group(1)).resolve() == _host_libvirt().resolve()


def test_chain_over_libvirt_inside_the_appimage(
    appimage: Path, tmp_path: Path, domains: Domains,  # noqa: F811
) -> None:  # fmt: skip
    paths = ChainBuilder(tmp_path).chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    name = domains.start({"vda": str(paths[-1])})
    out = _run(
        [str(appimage), "--appimage-extract-and-run", "chain", "--connect", URI, "--json"],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    listed = {d["name"]: d for d in json.loads(out.stdout)}
    assert listed[name]["running"] and listed[name]["disks"][0]["target"] == "vda"
    args = ["chain", "--connect", URI, "--domain", name, "--disk", "vda", "--json"]
    out = _run([str(appimage), "--appimage-extract-and-run", *args], tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == _host_json(args, tmp_path)
    assert [x["path"] for x in got["disks"][0]["chain"]] == [str(p) for p in reversed(paths)]


def _with_libvirt_replaced(replacement: Path, argv: list[str], cwd: Path) -> str:
    """Run argv in a mount namespace where the host's libvirt.so.0 is ``replacement``."""
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    real = _host_libvirt().resolve()
    out = _run(["unshare", "-m", "sh", "-c", script, "sh", str(replacement), str(real), *argv], cwd)
    assert out.returncode == 1, out.stdout + out.stderr  # EXIT_FAILED, before any libvirt call
    assert out.stdout == ""
    return out.stderr


def test_without_host_libvirt_the_appimage_says_what_to_install(
    appimage: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    argv = [str(appimage), "--appimage-extract-and-run", "chain", "--connect", URI]
    message = _with_libvirt_replaced(empty, argv, tmp_path)
    assert "libvirt support in the AppImage uses this computer's libvirt client library" in message
    assert "libvirt.so.0" in message and "could not be loaded" in message
    assert all(hint in message for hint in HOST_INSTALL), message
    assert "pip install" not in message


def test_with_too_old_host_libvirt_the_appimage_says_so(appimage: Path, tmp_path: Path) -> None:
    # An old libvirt cannot be installed next to Debian 12's, so a stand-in: a real shared
    # library called libvirt.so.0 that defines only libvirt 0.0.3's symbol version.
    (tmp_path / "old.c").write_text("int virGetVersion(unsigned long *v) { *v = 3; return 0; }\n")
    (tmp_path / "old.map").write_text("LIBVIRT_0.0.3 { global: virGetVersion; local: *; };\n")
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libvirt.so.0", "-Wl,--version-script=old.map",
         "-o", "libvirt.so.0", "old.c"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    argv = [str(appimage), "--appimage-extract-and-run", "chain", "--connect", URI]
    message = _with_libvirt_replaced(tmp_path / "libvirt.so.0", argv, tmp_path)
    assert re.search(r"the one installed is too old \(it lacks the libvirt \d[\d.]* API\)", message)
    assert all(hint in message for hint in HOST_INSTALL), message


def _rebuild(appimage: Path, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Pack again from the bundle the module fixture built (--reuse-bundle skips PyInstaller)."""
    work = appimage.parent.parent
    return subprocess.run(
        [str(ROOT / "packaging" / "build-appimage.sh"), "--reuse-bundle", "--work", str(work),
         "--out", str(out)],
        env=dict(os.environ, PYTHON=sys.executable, **env),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_a_runtime_given_by_appimage_runtime_is_used(appimage: Path, tmp_path: Path) -> None:
    given = tmp_path / "upstream-runtime"
    given.write_bytes((appimage.parent.parent / "runtime" / "runtime").read_bytes())
    given.chmod(0o755)
    result = _rebuild(appimage, tmp_path / "out", APPIMAGE_RUNTIME=str(given))
    assert result.returncode == 0, result.stderr
    assert f"using the runtime {given}" in result.stdout
    built = tmp_path / "out" / appimage.name
    assert built.read_bytes()[: given.stat().st_size] == given.read_bytes()
    version = _run([str(built), "--appimage-version"], tmp_path)
    assert version.returncode == 0


def test_an_appimagetool_on_path_packs_the_appdir(appimage: Path, tmp_path: Path) -> None:
    # appimagetool is not packaged for Debian; a stand-in on PATH records how it is called
    # and packs the AppDir the way our own path does, so the delegation itself is what's tested.
    tools = tmp_path / "bin"
    tools.mkdir()
    calls = tmp_path / "calls"
    runtime = appimage.parent.parent / "runtime" / "runtime"
    (tools / "appimagetool").write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {calls}\n'
        "for last; do :; done\n"
        'for arg; do [ "$arg" = "$last" ] && break; appdir=$arg; done\n'
        f'mksquashfs "$appdir" "$last.sqfs" -root-owned -noappend -comp zstd -quiet -no-progress\n'
        f'cat {runtime} "$last.sqfs" > "$last" && rm "$last.sqfs" && chmod 755 "$last"\n'
    )
    (tools / "appimagetool").chmod(0o755)
    result = _rebuild(appimage, tmp_path / "out", PATH=f"{tools}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    assert "packing with" in result.stdout and "appimagetool" in result.stdout
    arguments = calls.read_text().split()
    assert arguments[0] == "--no-appstream" and arguments[-1].endswith(appimage.name)
    assert Path(arguments[-2]).is_dir() and (Path(arguments[-2]) / "AppRun").exists()
    assert (
        _run([str(tmp_path / "out" / appimage.name), "--appimage-version"], tmp_path).returncode
        == 0
    )
