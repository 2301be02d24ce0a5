"""packaging/build-appimage.sh builds with the .venv that packaging/setup.sh made."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def which_python(root: Path, **env: str) -> str:
    """What the build script, copied under ``root``, would run as its Python."""
    script = root / "packaging" / "build-appimage.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "packaging" / "build-appimage.sh", script)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHON"} | env
    result = subprocess.run([str(script), "--which-python"], capture_output=True, text=True,
                            env=environment, check=True, timeout=30)  # fmt: skip
    return result.stdout.strip()


def test_build_uses_the_venv_python_when_setup_made_one(tmp_path: Path) -> None:
    assert which_python(tmp_path) == "python3"
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\n")
    venv_python.chmod(0o755)
    assert which_python(tmp_path) == str(venv_python)
    assert which_python(tmp_path, PYTHON="/opt/py/bin/python3") == "/opt/py/bin/python3"
