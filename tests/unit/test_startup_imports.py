"""Start-up: --version, --help, chain and plan import none of the heavy optional libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import create, write

GUI = Path(__file__).resolve().parents[2] / "gui"
HEAVY = ("networkx", "numpy", "PySide6", "qemu.qmp", "libvirt")
NO_ENGINES = ("PySide6", "qemu.qmp", "libvirt")

# Runs the console entry point as `python -m backchain` would, then reports which of the
# heavy modules ended up in sys.modules (on stderr's last line, whatever the command printed).
WRAPPER = """
import json, sys
from backchain.launch import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = json.loads({heavy!r})
found = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps({{"code": code, "found": found}}), file=sys.stderr)
"""


def imported(*args: str, watch: tuple[str, ...] = HEAVY) -> tuple[object, list[str]]:
    """Run ``backchain ARGS`` in a fresh interpreter; its exit code and the watched modules."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(GUI), os.environ.get("PYTHONPATH", "")]),
    }
    script = WRAPPER.format(heavy=json.dumps(list(watch)))
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], list(report["found"])


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_heavy_library(flag: str) -> None:
    code, found = imported(flag)
    assert code in (0, None)
    assert found == []


@pytest.fixture
def small_chain(tmp_path: Path) -> Path:
    base = create(tmp_path / "base.qcow2", "16M")
    write(base, 1, 0, 1 << 20)
    top = create(tmp_path / "top.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(top, 2, 1 << 20, 1 << 20)
    create(tmp_path / "sibling.qcow2", backing="base.qcow2", cwd=tmp_path)
    return top


@pytest.mark.parametrize("command", ["chain", "plan"])
def test_chain_and_plan_import_no_qt_and_no_online_engine(command: str, small_chain: Path) -> None:
    code, found = imported(command, str(small_chain))
    assert code == 0
    assert [m for m in found if any(m == h or m.startswith(h + ".") for h in NO_ENGINES)] == []


def test_chain_of_a_few_small_images_needs_neither_numpy_nor_networkx(small_chain: Path) -> None:
    code, found = imported("chain", "--json", str(small_chain))
    assert code == 0
    assert found == []


@pytest.mark.parametrize("args", [["--help"], ["commit", "--help"], ["plan", "--no-such-option"]])
def test_help_and_usage_errors_load_only_the_parser(args: list[str]) -> None:
    code, found = imported(*args, watch=("backchain",))
    assert code in (0, 2)
    assert found == ["backchain", "backchain.cli", "backchain.cli.parser", "backchain.launch"]


def test_an_offline_plan_does_not_load_libvirts_commands(small_chain: Path) -> None:
    code, found = imported("plan", "--json", str(small_chain), watch=("backchain.cli",))
    assert code == 0
    assert "backchain.cli.parser" in found
    assert [m for m in found if m in ("backchain.cli.libvirt", "backchain.cli.snapshots")] == []


def test_the_window_on_the_demo_needs_neither_networkx_nor_numpy_nor_an_online_engine() -> None:
    # Its first paint waits for the layout, which reads the graph's own overlay lists.
    code, found = imported("gui", "--demo", "--quit-after", "0.2")
    assert code == 0
    assert [m for m in found if not m.startswith("PySide6")] == []


def test_an_offline_commit_imports_neither_dataclasses_nor_typing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # typing costs 3 to 5 ms of a commit's start: the package's modules take their annotations'
    # names under core/static_typing's TYPE_CHECKING, and the journal's codec imports it only to
    # decode. A commit decodes every unfinished job it finds (one may hold these images), so the
    # state directory is this test's own: the session's holds jobs other tests left unfinished.
    monkeypatch.setenv("BACKCHAIN_STATE_DIR", str(tmp_path / "state"))
    base = create(tmp_path / "base.qcow2", "16M")
    mid = create(tmp_path / "mid.qcow2", backing="base.qcow2", cwd=tmp_path)
    write(mid, 3, 0, 1 << 20)
    top = create(tmp_path / "top.qcow2", backing="mid.qcow2", cwd=tmp_path)
    code, found = imported("commit", "--yes", "--top", str(mid), "--base", str(base), str(top),
                           watch=("dataclasses", "inspect", "typing"))  # fmt: skip
    assert code == 0
    assert found == []


def test_an_offline_plan_builds_its_classes_without_dataclasses(small_chain: Path) -> None:
    # dataclasses imports inspect, ast and dis (7 ms), and builds a class in 0.8 ms: the model's
    # value classes come from backchain.core.valueclass instead (a commit's fixed cost).
    code, found = imported("plan", "--json", str(small_chain), watch=("dataclasses", "inspect"))
    assert code == 0
    assert found == []
