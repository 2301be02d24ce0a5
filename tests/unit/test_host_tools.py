"""host_tools: finding the host's QEMU tools and the install command for each distribution."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backchain.engines import host_tools


def _executable(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for t in host_tools.TOOLS:
        monkeypatch.delenv(t.env, raising=False)


def test_all_tools_missing_from_an_empty_path(tmp_path: Path) -> None:
    assert host_tools.missing_tools(path=str(tmp_path)) == ["qemu-img", "qemu-io"]
    assert host_tools.missing_tools(include_optional=True, path=str(tmp_path)) == [
        "qemu-img",
        "qemu-io",
        "qemu-system-x86_64",
    ]


def test_tools_on_path_are_found(tmp_path: Path) -> None:
    img = _executable(tmp_path, "qemu-img")
    _executable(tmp_path, "qemu-io")
    assert host_tools.find_tool("qemu-img", path=str(tmp_path)) == str(img)
    assert host_tools.missing_tools(path=str(tmp_path)) == []
    assert host_tools.missing_tools(include_optional=True, path=str(tmp_path)) == [
        "qemu-system-x86_64"
    ]


def test_non_executable_file_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "qemu-img").write_text("not a program")
    assert host_tools.find_tool("qemu-img", path=str(tmp_path)) is None


def test_environment_override_names_the_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = _executable(tmp_path, "my-qemu-img")
    monkeypatch.setenv("BACKCHAIN_QEMU_IMG", str(custom))
    assert host_tools.find_tool("qemu-img", path=os.devnull) == str(custom)


def test_real_host_has_the_required_tools() -> None:
    # CI installs qemu-utils; the AppImage relies on exactly this lookup.
    assert host_tools.missing_tools() == []


@pytest.mark.parametrize(
    ("release", "manager"),
    [
        ({"ID": "debian"}, "apt"),
        ({"ID": "ubuntu", "ID_LIKE": "debian"}, "apt"),
        ({"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}, "apt"),
        ({"ID": "fedora"}, "dnf"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora"}, "dnf"),
        ({"ID": "arch"}, "pacman"),
        ({"ID": "manjaro", "ID_LIKE": "arch"}, "pacman"),
        ({"ID": "opensuse-tumbleweed", "ID_LIKE": "opensuse suse"}, "zypper"),
    ],
)
def test_package_manager_from_os_release(release: dict[str, str], manager: str) -> None:
    assert host_tools.detect_package_manager(release, path=os.devnull) == manager


def test_unknown_distribution_falls_back_to_path(tmp_path: Path) -> None:
    _executable(tmp_path, "zypper")
    assert host_tools.detect_package_manager({"ID": "exotic"}, path=str(tmp_path)) == "zypper"
    assert host_tools.detect_package_manager({"ID": "exotic"}, path=os.devnull) is None


def test_os_release_file_is_parsed(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('# comment\nNAME="Fedora Linux"\nID=fedora\nID_LIKE="rhel centos"\n')
    assert host_tools.read_os_release(str(release)) == {
        "NAME": "Fedora Linux",
        "ID": "fedora",
        "ID_LIKE": "rhel centos",
    }
    assert host_tools.read_os_release(str(tmp_path / "absent")) == {}


def test_install_commands_name_each_package_once() -> None:
    assert host_tools.install_commands(["qemu-img", "qemu-io", "qemu-system-x86_64"]) == {
        "apt": "sudo apt install qemu-utils qemu-system-x86",
        "dnf": "sudo dnf install qemu-img qemu-system-x86-core",
        "pacman": "sudo pacman -S qemu-img qemu-system-x86",
        "zypper": "sudo zypper install qemu-tools qemu-x86",
    }
