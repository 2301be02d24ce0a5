"""Shared pytest setup: Qt offscreen, and real qcow2 chains built with qemu-img and qemu-io."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Journals and locks of the commits tests run go to a scratch directory, never the user's.
# Both live in one scratch directory that goes when the session ends.
_scratch = tempfile.TemporaryDirectory(prefix="backchain-tests-")
os.environ.setdefault("BACKCHAIN_STATE_DIR", os.path.join(_scratch.name, "state"))
# The window's settings (recent files, geometry) too, including in the CLI's child processes.
os.environ.setdefault("BACKCHAIN_SETTINGS", os.path.join(_scratch.name, "settings.ini"))

from tests.images import ChainBuilder  # noqa: E402  (imported once the environment is set)


@pytest.fixture
def chain_builder(tmp_path: Path) -> ChainBuilder:
    """Builds images in tmp_path with real qemu-img and qemu-io."""
    return ChainBuilder(tmp_path)
