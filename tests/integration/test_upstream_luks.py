"""QEMU's iotest 198 (LUKS-encrypted layers), committed offline by Backchain's qemu-img steps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backchain.launch import main
from tests.helpers.checks import luks
from tests.images import MiB, backing_name

KEY = "123456"


def opts(chain: list[Path], encrypted: list[bool]) -> str:
    """--image-opts for the top of ``chain`` (top first), with the key of each encrypted layer."""
    keys = ["backing." * depth + "encrypt.key-secret=sec0"
            for depth, flag in enumerate(encrypted) if flag]  # fmt: skip
    return ",".join([f"driver=qcow2,file.filename={chain[0]}", *keys])


def qemu_io(secret: str, spec: str, command: str) -> bool:
    """Run one qemu-io command on an --image-opts spec; True when it succeeded and verified."""
    result = subprocess.run(["qemu-io", "--object", secret, "--image-opts", spec, "-c", command],
                            capture_output=True, text=True, check=False)  # fmt: skip
    return result.returncode == 0 and "verification failed" not in result.stdout


@pytest.fixture
def secret(tmp_path: Path) -> str:
    """A secret read from a key file, as qemu-img takes it."""
    (tmp_path / "key").write_text(KEY)
    return f"secret,id=sec0,file={tmp_path / 'key'}"


def test_iotest_198_commit_an_encrypted_overlay_into_an_encrypted_base(
    tmp_path: Path, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = luks(tmp_path / "base.qcow2", secret)
    top = luks(tmp_path / "top.qcow2", secret, "base.qcow2")
    assert qemu_io(secret, opts([base], [True]), "write -P 0x11 0 1M")
    assert qemu_io(secret, opts([top, base], [True, True]), "write -P 0x22 1M 1M")
    # Without the secret: refused at plan time, naming the encrypted layer.
    assert main(["plan", str(top)]) == 2
    assert f"{top} is encrypted" in capsys.readouterr().err
    assert main(["plan", str(top), "--object", f"secret,id=sec0,data={KEY}"]) == 2
    assert "read the secret from a file" in capsys.readouterr().err
    # With it: planned with exact allocation, and committed.
    assert main(["plan", str(top), "--object", secret, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["bytes_to_copy"] == MiB
    assert "--image-opts" in plan["steps"][0] and "-d" in plan["steps"][0]
    assert main(["commit", str(top), "--object", secret, "--yes"]) == 0, capsys.readouterr().err
    assert qemu_io(secret, opts([base], [True]), "read -P 0x22 1M 1M")
    assert qemu_io(secret, opts([base], [True]), "read -P 0x11 0 1M")
    assert qemu_io(secret, opts([top, base], [True, True]), "read -P 0x22 1M 1M")


def test_iotest_198_every_step_opens_encrypted_layers_with_the_secret(
    tmp_path: Path, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--shallow into an encrypted base, an encrypted overlay re-pointed, a verified --delete."""
    base = luks(tmp_path / "base.qcow2", secret)
    mid = luks(tmp_path / "mid.qcow2", secret, "base.qcow2")
    top = luks(tmp_path / "top.qcow2", secret, "mid.qcow2")
    assert qemu_io(secret, opts([mid, base], [True, True]), "write -P 0x33 2M 1M")
    argv = ["commit", str(top), "--top", str(mid), "--shallow", "--delete", "--object", secret]
    assert main([*argv, "--yes"]) == 0, capsys.readouterr().err
    assert not mid.exists() and backing_name(top) == "base.qcow2"
    assert qemu_io(secret, opts([top, base], [True, True]), "read -P 0x33 2M 1M")


def test_iotest_198_a_plain_base_below_encrypted_layers_is_named_with_b(
    tmp_path: Path, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    mid = luks(tmp_path / "mid.qcow2", secret, "base.qcow2")
    top = luks(tmp_path / "top.qcow2", secret, "mid.qcow2")
    assert qemu_io(secret, opts([top, mid], [True, True]), "write -P 0x44 3M 1M")
    assert main(["commit", str(top), "--object", secret, "--yes"]) == 0, capsys.readouterr().err
    check = subprocess.run(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x44 3M 1M",
                            str(base)], capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 0 and "verification failed" not in check.stdout


def test_iotest_198_an_encrypted_base_below_top_s_backing_is_refused(
    tmp_path: Path, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """qemu-img commit -b cannot name an encrypted base in a chain opened with --image-opts."""
    base = luks(tmp_path / "base.qcow2", secret)
    mid = luks(tmp_path / "mid.qcow2", secret, "base.qcow2")
    top = luks(tmp_path / "top.qcow2", secret, "mid.qcow2")
    assert main(["plan", str(top), "--object", secret]) == 2
    assert f"{base} is encrypted, and qemu-img commit can only commit" in capsys.readouterr().err
    assert mid.exists()
