"""The desktop entry, AppStream metainfo, MIME definition and icons, checked with the real tools."""

from __future__ import annotations

import configparser
import importlib.resources
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

RES = Path(__file__).resolve().parents[2] / "resources"
ROOT = RES.parent
METAINFO = RES / "io.github.backchain.Backchain.metainfo.xml"
ICON_FILES = ["backchain.svg", "backchain-48.png", "backchain-128.png", "backchain-256.png"]


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(RES / "backchain.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_file_validates() -> None:
    out = subprocess.run(
        ["desktop-file-validate", str(RES / "backchain.desktop")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Hints are advice; errors and warnings are not allowed.
    assert "error:" not in out.stdout and "warning:" not in out.stdout, out.stdout


def test_desktop_file_opens_qcow2_images() -> None:
    entry = _desktop_entry()
    assert "application/x-qemu-disk" in entry["MimeType"].split(";")
    assert entry["Exec"] == "backchain %f"
    assert entry["Icon"] == "backchain"


def test_metainfo_validates() -> None:
    # --no-net: the screenshot URL is not fetched (no network in CI); the format still is checked.
    out = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(METAINFO)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_metainfo_has_description_screenshot_and_release() -> None:
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == "io.github.backchain.Backchain"
    assert root.findtext("launchable") == "backchain.desktop"
    assert root.find("description/p") is not None
    shot = root.findtext("screenshots/screenshot/image") or ""
    # The URL points at a screenshot the repository keeps.
    assert (RES / "screenshots" / shot.rsplit("/", 1)[-1]).is_file(), shot
    release = root.find("releases/release")
    assert release is not None
    from backchain import __version__

    assert release.get("version") == __version__
    assert root.findtext("provides/mediatype") == "application/x-qemu-disk"


def test_mime_definition_matches_qcow2_magic() -> None:
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    root = ET.parse(RES / "backchain-mime.xml").getroot()
    mime = root.find("m:mime-type", ns)
    assert mime is not None and mime.get("type") == "application/x-qemu-disk"
    globs = {g.get("pattern") for g in mime.findall("m:glob", ns)}
    assert "*.qcow2" in globs


@pytest.mark.parametrize("size", [48, 128, 256])
def test_png_icons_have_their_size(size: int) -> None:
    data = (RES / f"backchain-{size}.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (size, size)


def test_svg_icon_is_square_svg() -> None:
    root = ET.parse(RES / "backchain.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 256 256"


def test_resources_are_importable_as_package_data() -> None:
    files = importlib.resources.files("backchain.resources")
    for name in [*ICON_FILES, "backchain.desktop", METAINFO.name]:
        assert files.joinpath(name).is_file(), name


@pytest.mark.slow
def test_wheel_contains_the_resources(tmp_path: Path) -> None:
    # Build from a copy: setuptools leaves build/ and egg-info behind in the source tree.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "screenshots")
    for part in ("gui", "resources"):
        shutil.copytree(ROOT / part, src / part, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", src)
    if (ROOT / "README.md").exists():
        shutil.copy(ROOT / "README.md", src)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = out.glob("backchain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*ICON_FILES, "backchain.desktop", METAINFO.name, "__init__.py"]:
        assert f"backchain/resources/{name}" in names
