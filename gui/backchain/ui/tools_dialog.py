"""The dialog shown at startup when qemu-img or its companions are missing from the host."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from backchain.engines import host_tools


def missing_tools_text(
    missing: Sequence[str], manager: str | None, optional: Sequence[str] = ()
) -> tuple[str, str]:
    """The dialog's main line and its body (rich text) for the given missing tools."""
    names = ", ".join(missing)
    title = f"Backchain needs {names}, which is not installed on this computer."
    if len(missing) > 1:
        title = f"Backchain needs {names}, which are not installed on this computer."
    purposes = "".join(
        f"<li><b>{name}</b> {host_tools.tool(name).purpose}</li>" for name in missing
    )
    body = [
        "<p>Backchain uses your system's QEMU tools, so that they match your virtual machines:"
        f"</p><ul>{purposes}</ul>"
    ]
    if manager is not None:
        body.append(
            f"<p>Install them with:</p><pre>{host_tools.install_command(manager, missing)}</pre>"
        )
    else:
        commands = host_tools.install_commands(missing)
        rows = "".join(f"{mgr}: {cmd}\n" for mgr, cmd in commands.items())
        body.append(f"<p>Install them with your package manager:</p><pre>{rows}</pre>")
    if optional:
        body.append(
            "<p>Optional and also missing: "
            + ", ".join(f"{name} ({host_tools.tool(name).purpose})" for name in optional)
            + ".</p>"
        )
    body.append("<p>Then start Backchain again.</p>")
    return title, "".join(body)


def build_missing_tools_dialog(
    parent: QWidget | None,
    missing: Sequence[str],
    manager: str | None,
    optional: Sequence[str] = (),
) -> QMessageBox:
    """A warning box naming the missing tools and the command that installs them."""
    title, body = missing_tools_text(missing, manager, optional)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("QEMU tools missing")
    box.setText(title)
    box.setInformativeText(body)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    # So that the install command can be copied into a terminal.
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    # Every package manager's command, for users whose distribution was not recognised right.
    box.setDetailedText(
        "\n".join(f"{mgr}: {cmd}" for mgr, cmd in host_tools.install_commands(missing).items())
    )
    return box


def show_missing_tools_dialog(parent: QWidget | None, missing: Sequence[str] | None = None) -> None:
    """Explain what to install when required tools are missing; does nothing otherwise.

    `missing` defaults to host_tools.missing_tools(); the window passes what it already found.
    """
    required = list(missing) if missing is not None else host_tools.missing_tools()
    if not required:
        return
    optional = [n for n in host_tools.missing_tools(include_optional=True) if n not in required]
    box = build_missing_tools_dialog(
        parent, required, host_tools.detect_package_manager(), optional
    )
    box.exec()
