"""Fault 7: hostile file names, symlinked layers, backings in other directories, and json:, nbd:
and http: backings that must never be opened (a listening socket proves no connection came)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import record
from tests.helpers.checks import cli
from tests.images import (
    MiB,
    check_clean,
    checksums,
    create,
    reads,
    snapshot_copy,
    tree_checksums,
    write,
)

HOSTILE = ["-dash base.qcow2", "new\nline.qcow2", "ünï©ødé snap.qcow2", "--delete.qcow2"]


def committed(result: subprocess.CompletedProcess[str], fault: str) -> None:
    """The commit succeeded, with no traceback."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    record(fault, True)


def test_spaces_newlines_unicode_and_leading_dashes_in_names(tmp_path: Path) -> None:
    """A chain whose every name is hostile commits correctly; each layer's data reads back."""
    paths = []
    for index, name in enumerate(HOSTILE):
        path = tmp_path / name
        if paths:
            create(path, backing=paths[-1].name, cwd=tmp_path)
        else:
            create(path, "16M")
        write(path, 0x11 * (index + 1), index * MiB, MiB)
        paths.append(path)
    # The reference copy sits in a folder of its own, where no scan of the chain's folder sees it.
    (tmp_path / "reference").mkdir()
    view = snapshot_copy(paths[-1], tmp_path / "reference" / "view.qcow2")
    # The top layer is given as ./-name, the way a shell user must; base is found as a path.
    result = cli(
        "commit", "--yes", "--top", "./" + HOSTILE[2], "--delete", "./" + HOSTILE[3], cwd=tmp_path
    )
    committed(result, "7. hostile names and backings")
    assert not paths[2].exists() and not paths[1].exists()
    for index in range(4):
        assert reads(paths[3], 0x11 * (index + 1), index * MiB, MiB)
    assert check_clean(paths[0]) and check_clean(paths[3])
    assert (
        subprocess.run(
            ["qemu-img", "compare", "-U", str(paths[3]), str(view)], check=False
        ).returncode
        == 0
    )


def test_symlinked_layers_and_backings_in_other_directories(tmp_path: Path) -> None:
    """Layers reached through symlinks and ../ names: the real files are committed and
    re-pointed, the symlinks stay symlinks, and an unrelated directory is untouched."""
    a, b, c, elsewhere = (tmp_path / d for d in ("a", "b", "c", "elsewhere"))
    for directory in (a, b, c, elsewhere):
        directory.mkdir()
    base = create(a / "base.qcow2", "16M")
    write(base, 0x11, 0, MiB)
    # The link and its target sit at the same depth, so that "../a" means the same from both
    # (qemu resolves a relative backing name from the directory the layer was opened through).
    (tmp_path / "real").mkdir()
    snap = create(
        tmp_path / "real" / "snap.qcow2", backing="../a/base.qcow2", cwd=tmp_path / "real"
    )
    write(snap, 0x22, MiB, MiB)
    (b / "snaplink.qcow2").symlink_to("../real/snap.qcow2")
    active = create(c / "active.qcow2", backing="../b/snaplink.qcow2", cwd=c)
    write(active, 0x33, 2 * MiB, MiB)
    (elsewhere / "active-link.qcow2").symlink_to(active)
    untouched = create(elsewhere / "other.qcow2", backing="../a/base.qcow2", cwd=elsewhere)
    sums = checksums([untouched])
    result = cli(
        "commit",
        "--yes",
        "--top",
        str(b / "snaplink.qcow2"),
        str(elsewhere / "active-link.qcow2"),
        cwd=tmp_path,
    )
    committed(result, "7. hostile names and backings")
    assert (b / "snaplink.qcow2").is_symlink()
    assert reads(active, 0x11, 0, MiB) and reads(active, 0x22, MiB, MiB)
    assert reads(active, 0x33, 2 * MiB, MiB) and reads(base, 0x22, MiB, MiB)
    info = subprocess.run(
        ["qemu-img", "info", "-U", str(active)], capture_output=True, text=True, check=True
    ).stdout
    assert "backing file: ../a/base.qcow2" in info
    assert checksums([untouched]) == sums
    assert (elsewhere / "active-link.qcow2").is_symlink()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket on 127.0.0.1 that must never see a connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def unsafe_backings(port: int) -> dict[str, str]:
    """Image name -> a backing name that would make qemu connect to the listener."""
    nbd = f'{{"driver":"nbd","server":{{"type":"inet","host":"127.0.0.1","port":"{port}"}}}}'
    return {
        "nbd.qcow2": f"nbd://127.0.0.1:{port}/export",
        "http.qcow2": f"http://127.0.0.1:{port}/disk.img",
        "json.qcow2": 'json:{"driver":"raw","file":' + nbd + "}",
        "nbd-tcp.qcow2": f"nbd:127.0.0.1:{port}",
    }


def test_json_nbd_and_http_backings_are_never_opened(
    tmp_path: Path, listener: socket.socket
) -> None:
    """chain, plan, commit and a sibling scan on protocol backings: refused by name, and the
    listening socket receives no connection at all."""
    port = listener.getsockname()[1]
    for name, backing in unsafe_backings(port).items():
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-u",
                "-b",
                backing,
                "-F",
                "raw",
                str(tmp_path / name),
                "16M",
            ],
            check=True,
        )
        # One layer further up, too: the unsafe backing is met while walking the chain.
        # (-u: qemu-img create would otherwise open the backing, and connect itself.)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", name, "-F",
                        "qcow2", str(tmp_path / f"over-{name}"), "16M"], check=True)  # fmt: skip
    normal = create(tmp_path / "normal-base.qcow2", "16M")
    create(tmp_path / "normal.qcow2", backing=normal.name, cwd=tmp_path)
    before = tree_checksums(tmp_path)
    for name in unsafe_backings(port):
        for image in (name, f"over-{name}"):
            for command in (["chain"], ["plan"], ["commit", "--yes"]):
                result = cli(*command, image, cwd=tmp_path)
                assert result.returncode == 2, (command, image, result.stderr)
                assert "never opens" in result.stderr or "does not open" in result.stderr
                assert "Traceback" not in result.stderr
                record("7. hostile names and backings", True)
    # A scan of the directory meets every unsafe image as a possible sibling.
    scan = cli("chain", "--json", "normal.qcow2", cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    gui_env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "backchain",
            "gui",
            "--quit-after",
            "2",
            str(tmp_path / "over-nbd.qcow2"),
        ],
        env=gui_env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    readable, _, _ = select.select([listener], [], [], 0.5)
    assert readable == [], "something connected to the listening socket"
    assert tree_checksums(tmp_path) == before
