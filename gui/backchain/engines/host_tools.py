"""Find the host's QEMU tools, and say how to install them on the common distributions."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

from backchain.core.valueclass import valueclass


@valueclass(frozen=True)
class Tool:
    """A host program Backchain runs, with the package that provides it per package manager."""

    name: str
    env: str
    purpose: str
    required: bool
    packages: Mapping[str, str]


# The AppImage bundles no QEMU on purpose: the host's tools match the user's VMs and images.
TOOLS: tuple[Tool, ...] = (
    Tool(
        "qemu-img",
        "BACKCHAIN_QEMU_IMG",
        "reads chains and runs offline commits",
        True,
        {"apt": "qemu-utils", "dnf": "qemu-img", "pacman": "qemu-img", "zypper": "qemu-tools"},
    ),
    Tool(
        "qemu-io",
        "BACKCHAIN_QEMU_IO",
        "writes the demo chain's data",
        True,
        {"apt": "qemu-utils", "dnf": "qemu-img", "pacman": "qemu-img", "zypper": "qemu-tools"},
    ),
    Tool(
        "qemu-system-x86_64",
        "BACKCHAIN_QEMU_SYSTEM",
        "runs virtual machines (only needed for online commits of local VMs)",
        False,
        {
            "apt": "qemu-system-x86",
            "dnf": "qemu-system-x86-core",
            "pacman": "qemu-system-x86",
            "zypper": "qemu-x86",
        },
    ),
)

INSTALL_PREFIX: Mapping[str, str] = {
    "apt": "sudo apt install",
    "dnf": "sudo dnf install",
    "pacman": "sudo pacman -S",
    "zypper": "sudo zypper install",
}

# os-release IDs (ID and ID_LIKE) of the families each package manager serves.
_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "apt": ("debian", "ubuntu", "linuxmint", "pop", "raspbian"),
    "dnf": ("fedora", "rhel", "centos", "rocky", "almalinux"),
    "pacman": ("arch", "manjaro", "endeavouros"),
    "zypper": ("suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "sles"),
}
_COMMANDS: Mapping[str, str] = {"apt": "apt", "dnf": "dnf", "pacman": "pacman", "zypper": "zypper"}


def tool(name: str) -> Tool:
    """The Tool called `name`; KeyError for an unknown name."""
    for candidate in TOOLS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def find_tool(name: str, path: str | None = None) -> str | None:
    """The absolute path of a tool, honouring its BACKCHAIN_* override, or None when absent."""
    override = os.environ.get(tool(name).env)
    return shutil.which(override or name, path=path)


def missing_tools(include_optional: bool = False, path: str | None = None) -> list[str]:
    """Names of the tools that cannot be found (required ones only, unless asked)."""
    return [
        t.name
        for t in TOOLS
        if (t.required or include_optional) and find_tool(t.name, path=path) is None
    ]


def read_os_release(filename: str = "/etc/os-release") -> dict[str, str]:
    """The KEY=value pairs of an os-release file; empty when it cannot be read."""
    values: dict[str, str] = {}
    try:
        with open(filename, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return values
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def detect_package_manager(
    os_release: Mapping[str, str] | None = None, path: str | None = None
) -> str | None:
    """The host's package manager: from os-release first, then from what is on PATH."""
    release = read_os_release() if os_release is None else os_release
    ids = [release.get("ID", ""), *release.get("ID_LIKE", "").split()]
    for ident in ids:
        for manager, family in _FAMILIES.items():
            if ident and ident.lower() in family:
                return manager
    for manager, command in _COMMANDS.items():
        if shutil.which(command, path=path):
            return manager
    return None


def install_command(manager: str, names: Sequence[str]) -> str:
    """The shell command that installs the packages providing `names` with `manager`."""
    packages: list[str] = []
    for name in names:
        package = tool(name).packages[manager]
        if package not in packages:
            packages.append(package)
    return f"{INSTALL_PREFIX[manager]} {' '.join(packages)}"


def install_commands(names: Sequence[str]) -> dict[str, str]:
    """One install command per supported package manager, for the given tool names."""
    return {manager: install_command(manager, names) for manager in INSTALL_PREFIX}
