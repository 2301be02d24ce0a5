"""qcow2 images with an external data file (data_file=, iotest 244), committed offline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.images import MiB, backchain, backing_name, reads, run, write


def with_data_file(path: Path, data_file: str, backing: str | None = None) -> Path:
    """A qcow2 image whose data lives in ``data_file`` (a name recorded exactly as given)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={data_file}"]
    argv += ["-b", backing, "-F", "qcow2", str(path)] if backing else [str(path), "16M"]
    run(argv, cwd=path.parent)
    return path


def test_iotest_244_commit_into_a_base_with_an_external_data_file(tmp_path: Path) -> None:
    base = with_data_file(tmp_path / "base.qcow2", str(tmp_path / "base.data"))
    mid = with_data_file(tmp_path / "mid.qcow2", str(tmp_path / "mid.data"), "base.qcow2")
    top = tmp_path / "top.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", str(top)],
        cwd=tmp_path)  # fmt: skip
    write(base, 0x11, 0, MiB)
    write(mid, 0x22, MiB, MiB)
    write(top, 0x33, 2 * MiB, MiB)
    plan = backchain("plan", str(top), "--top", str(mid), "--delete", "--json")
    assert plan.returncode == 0, plan.stderr
    document = json.loads(plan.stdout)
    assert document["bytes_to_copy"] == MiB  # mid's allocation, read through qemu-img map
    assert ["rm", "-f", "--", str(tmp_path / "mid.data")] in document["steps"]
    result = backchain("commit", str(top), "--top", str(mid), "--delete", "--yes")
    assert result.returncode == 0, result.stderr
    assert not mid.exists() and not (tmp_path / "mid.data").exists()
    assert backing_name(top) == "base.qcow2"
    for pattern, offset in ((0x11, 0), (0x22, MiB), (0x33, 2 * MiB)):
        assert reads(top, pattern, offset, MiB)
    assert reads(base, 0x22, MiB, MiB)
    result = backchain("commit", str(top), "--yes")
    assert result.returncode == 0, result.stderr
    assert reads(base, 0x33, 2 * MiB, MiB)


def test_iotest_244_a_relative_data_file_name_is_refused_with_the_reason(tmp_path: Path) -> None:
    """qemu-img resolves it against its current directory: which file it opens depends on that."""
    base = with_data_file(tmp_path / "base.qcow2", "base.data")
    top = tmp_path / "top.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(top)],
        cwd=tmp_path)  # fmt: skip
    result = backchain("plan", str(top))
    assert result.returncode == 2
    assert f"{base}: names its external data file relatively ('base.data')" in result.stderr
