"""Reading real chains: paths, backing names, extents, siblings, and every kind of bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from backchain.core.errors import ImageError
from backchain.engines.files.scan import open_graph, read_chain, scan_directories
from tests.images import ChainBuilder, MiB, create, run, write, write_zeroes
from tests.images import backchain as cli


def test_chain_layers_record_paths_names_formats_and_own_extents(
    chain_builder: ChainBuilder,
) -> None:
    paths = chain_builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    write_zeroes(paths[1], 60 * MiB, MiB)
    graph = open_graph(str(paths[-1]))
    chain = graph.chain(str(paths[-1]))
    assert [layer.path for layer in chain] == [str(p) for p in reversed(paths)]
    snap1 = chain[1]
    assert (snap1.format, snap1.virtual_size, snap1.backing_name) == (
        "qcow2",
        64 * MiB,
        "base.qcow2",
    )
    assert snap1.backing_is_relative and snap1.backing_format == "qcow2"
    assert snap1.actual_size and snap1.actual_size > 0
    # snap1 wrote 1 MiB at 1 MiB and 2 MiB at 33 MiB, and a zero cluster run at 60 MiB.
    assert list(snap1.extents or []) == [(MiB, 2 * MiB), (33 * MiB, 35 * MiB), (60 * MiB, 61 * MiB)]


def test_relative_names_resolve_against_the_referencing_image_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    base = create(tmp_path / "a" / "base.qcow2", "16M")
    mid = create(tmp_path / "b" / "mid.qcow2", backing="../a/base.qcow2", cwd=tmp_path / "b")
    top = create(
        tmp_path / "b" / "c" / "top.qcow2", backing="../mid.qcow2", cwd=tmp_path / "b" / "c"
    )
    monkeypatch.chdir(tmp_path / "b" / "c")  # restored after the test, unlike os.chdir
    graph = read_chain("top.qcow2")
    assert [layer.path for layer in graph.chain(str(top))] == [str(top), str(mid), str(base)]


def test_scan_finds_siblings_and_branches_through_any_layer(
    chain_builder: ChainBuilder, tmp_path: Path
) -> None:
    base, snap1, active = chain_builder.chain(["base.qcow2", "snap1.qcow2", "active.qcow2"])
    other = chain_builder.overlay("other.qcow2", base)
    branch = chain_builder.overlay("branch.qcow2", snap1)
    leaf = chain_builder.overlay("deeper/leaf.qcow2", branch)
    unrelated = create(tmp_path / "unrelated.qcow2", "16M")
    (tmp_path / "notes.txt").write_text("not an image")
    graph = scan_directories(read_chain(str(active)), [str(tmp_path), str(tmp_path / "deeper")])
    assert set(graph.paths) == {str(p) for p in (base, snap1, active, other, branch, leaf)}
    assert str(unrelated) not in graph
    assert graph.dependants(str(snap1)) == {str(active), str(branch), str(leaf)}
    assert graph.overlays(str(base)) == sorted([str(other), str(snap1)])


def test_default_scan_covers_the_chain_directories(chain_builder: ChainBuilder) -> None:
    base, active = chain_builder.chain(["base.qcow2", "active.qcow2"])
    other = chain_builder.overlay("other.qcow2", base)
    assert str(other) in open_graph(str(active))


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda d: (d / "x.qcow2").write_text("hello, not an image"), "is not a qcow2 image"),
        (lambda d: (d / "x.qcow2").write_bytes(b"QFI\xfb\x00\x00"), "truncated qcow2 header"),
        (lambda d: (d / "x.qcow2").mkdir(), "is a directory"),
        (lambda d: os.symlink(d / "nowhere", d / "x.qcow2"), "does not exist"),
    ],
)
def test_bad_files_are_refused_with_the_file_named(tmp_path: Path, make, cause: str) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path)
    with pytest.raises(ImageError, match=cause):
        read_chain(str(tmp_path / "x.qcow2"))
    result = cli("chain", str(tmp_path / "x.qcow2"))
    assert result.returncode == 2
    assert "x.qcow2" in result.stderr and cause in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_header_fields_are_refused(tmp_path: Path) -> None:
    create(tmp_path / "base.qcow2", "16M")
    image = create(tmp_path / "x.qcow2", backing="base.qcow2", cwd=tmp_path)
    data = bytearray(image.read_bytes())
    data[16:20] = (5000).to_bytes(4, "big")  # backing name length beyond qemu's limit
    image.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt backing file name length"):
        read_chain(str(image))


def test_missing_backing_file_is_named(chain_builder: ChainBuilder) -> None:
    base, active = chain_builder.chain(["base.qcow2", "active.qcow2"])
    base.unlink()
    result = cli("chain", str(active))
    assert result.returncode == 2
    assert "active.qcow2" in result.stderr and "'base.qcow2' is missing" in result.stderr


def test_backing_without_a_recorded_format_is_never_probed(tmp_path: Path) -> None:
    create(tmp_path / "base.qcow2", "16M")
    top = create(tmp_path / "top.qcow2", "16M")
    # qemu-img no longer writes such headers, so write the name the way old images carry it:
    # in the header cluster, with no backing-format extension.
    data = bytearray(top.read_bytes())
    name = b"base.qcow2"
    data[2048 : 2048 + len(name)] = name
    data[8:16] = (2048).to_bytes(8, "big")
    data[16:20] = len(name).to_bytes(4, "big")
    top.write_bytes(bytes(data))
    assert "backing file: base.qcow2" in run(["qemu-img", "info", "-U", str(top)])
    with pytest.raises(ImageError, match="does not record the format of its backing file"):
        read_chain(str(tmp_path / "top.qcow2"))


@pytest.mark.parametrize(
    "scheme",
    [
        "nbd://127.0.0.1:{port}/x",
        "http://127.0.0.1:{port}/x.qcow2",
        'json:{{"file":{{"driver":"nbd","host":"127.0.0.1","port":"{port}"}}}}',
    ],
)
def test_network_and_json_backings_are_refused_without_connecting(
    tmp_path: Path, scheme: str
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            scheme.format(port=port),
            "-F",
            "raw",
            "top.qcow2",
            "16M",
        ],
        cwd=tmp_path,
    )
    for args in (["chain"], ["plan"], ["commit", "--yes"]):
        result = cli(*args, str(tmp_path / "top.qcow2"))
        assert result.returncode == 2, result.stderr
        assert "top.qcow2" in result.stderr
    connections = []
    try:
        while True:
            connections.append(listener.accept())
    except TimeoutError:
        pass
    listener.close()
    assert connections == []


def test_a_backing_loop_is_refused(tmp_path: Path) -> None:
    create(tmp_path / "a.qcow2", "16M")
    create(tmp_path / "b.qcow2", backing="a.qcow2", cwd=tmp_path)
    run(["qemu-img", "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2"], cwd=tmp_path)
    result = cli("chain", str(tmp_path / "b.qcow2"))
    assert result.returncode == 2 and "loops back" in result.stderr


def test_self_reference_is_a_loop(tmp_path: Path) -> None:
    create(tmp_path / "a.qcow2", "16M")
    run(["qemu-img", "rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", "a.qcow2"], cwd=tmp_path)
    with pytest.raises(ImageError, match="loops back"):
        read_chain(str(tmp_path / "a.qcow2"))


@pytest.mark.parametrize("name", ["with space.qcow2", "ünïcødé.qcow2", "-leading-dash.qcow2"])
def test_awkward_file_names_work_end_to_end(tmp_path: Path, name: str) -> None:
    base = create(tmp_path / f"base {name}", "16M")
    write(base, 0x11, 0, MiB)
    top = create(tmp_path / name, backing=f"./base {name}", cwd=tmp_path)
    write(top, 0x22, 0, MiB)
    result = cli("chain", "--json", "--", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = cli("commit", "--yes", "--", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from tests.images import reads

    assert reads(base, 0x22, 0, MiB)


def test_symlinked_layers_are_matched_after_resolving(
    tmp_path: Path, chain_builder: ChainBuilder
) -> None:
    _, snap, active = chain_builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"])
    os.symlink(snap, tmp_path / "link-to-snap.qcow2")
    result = cli("plan", "--json", str(active), "--top", str(tmp_path / "link-to-snap.qcow2"))
    assert result.returncode == 0, result.stderr
    assert f'"top": "{snap}"' in result.stdout


def test_header_reads_take_no_process_per_file(tmp_path: Path, chain_builder: ChainBuilder) -> None:
    base, active = chain_builder.chain(["base.qcow2", "active.qcow2"], data=False)
    for index in range(30):
        chain_builder.overlay(f"sib{index}.qcow2", base)
    seen: list[str] = []
    real_popen = subprocess.Popen

    class Counting(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, argv, *a, **k):  # type: ignore[no-untyped-def]
            seen.append(str(argv))
            super().__init__(argv, *a, **k)

    subprocess.Popen = Counting  # type: ignore[misc]
    try:
        graph = scan_directories(read_chain(str(active), with_qemu_info=False), [str(tmp_path)])
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
    assert len(graph) == 32 and seen == []


def test_reading_in_a_thread_is_safe(chain_builder: ChainBuilder) -> None:
    _, active = chain_builder.chain(["base.qcow2", "active.qcow2"])
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(len(open_graph(str(active)))))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2, 2, 2]
