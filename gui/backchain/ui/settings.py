"""Where the window keeps geometry and recent files: $BACKCHAIN_SETTINGS, else QSettings' own."""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

SETTINGS_ENV = "BACKCHAIN_SETTINGS"


def open_settings() -> QSettings:
    """The settings store; tests and scripts point BACKCHAIN_SETTINGS at a scratch INI file."""
    chosen = os.environ.get(SETTINGS_ENV)
    if chosen:
        return QSettings(os.path.abspath(chosen), QSettings.Format.IniFormat)
    return QSettings("backchain", "backchain")
