"""The qcow2 snapshot table and bitmap directory: names, L1 tables, sizes, each field checked."""

from __future__ import annotations

import os
import struct

from backchain.core.errors import ImageError
from backchain.core.valueclass import valueclass

# l1 offset, l1 size, id size, name size, date s, date ns, vm clock ns, vm state size, extra size
_SNAPSHOT = struct.Struct(">QIHHIIQII")
# vm state size (large), virtual size: the extra data QEMU writes since 2.x
_SNAPSHOT_EXTRA = struct.Struct(">QQ")
# bitmap table offset, table size, flags, type, granularity bits, name size, extra data size
_BITMAP = struct.Struct(">QIIBBHI")
# bitmap count, reserved, directory size, directory offset
_BITMAPS_EXT = struct.Struct(">IIQQ")
# QEMU's own limits (QCOW_MAX_SNAPSHOTS, QCOW2_MAX_BITMAPS, the directory's size cap).
_MAX_SNAPSHOTS = 65536
_MAX_BITMAPS = 65535
_MAX_DIRECTORY = 64 << 20
_MAX_L1_ENTRIES = (32 << 20) // 8


@valueclass(frozen=True)
class SnapshotEntry:
    """One internal snapshot: its id and name, its own L1 table and its virtual size."""

    id: str
    name: str
    l1_offset: int
    l1_size: int
    virtual_size: int


def _table(path: str, fd: int, offset: int, length: int, what: str) -> bytes:
    if length > _MAX_DIRECTORY:
        raise ImageError(path, f"has a corrupt {what} ({length} bytes)")
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise ImageError(path, f"has a {what} beyond the end of the file (corrupt)")
    return data


def _text(path: str, raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ImageError(path, f"has a {what} that is not valid UTF-8") from err


def read_snapshots(
    path: str, fd: int, count: int, offset: int, image_size: int
) -> tuple[SnapshotEntry, ...]:
    """Every entry of the snapshot table (empty when there is none)."""
    if count == 0:
        return ()
    if count > _MAX_SNAPSHOTS or offset % 8:
        raise ImageError(path, f"has a corrupt snapshot table ({count} entries at {offset})")
    entries: list[SnapshotEntry] = []
    position = offset
    for _ in range(count):
        fixed = _table(path, fd, position, _SNAPSHOT.size, "snapshot table")
        l1_offset, l1_size, id_size, name_size, *_rest, extra_size = _SNAPSHOT.unpack(fixed)
        variable = _table(path, fd, position + _SNAPSHOT.size, extra_size + id_size + name_size,
                          "snapshot table")  # fmt: skip
        size = image_size
        if extra_size >= _SNAPSHOT_EXTRA.size:
            size = _SNAPSHOT_EXTRA.unpack_from(variable)[1]
        if l1_size > _MAX_L1_ENTRIES:
            raise ImageError(path, f"has a snapshot with a corrupt L1 table ({l1_size} entries)")
        ident = _text(path, variable[extra_size : extra_size + id_size], "snapshot id")
        name = _text(path, variable[extra_size + id_size :], "snapshot name")
        entries.append(SnapshotEntry(ident, name, l1_offset, l1_size, size))
        length = _SNAPSHOT.size + extra_size + id_size + name_size
        position += (length + 7) & ~7
    return tuple(entries)


def read_bitmap_names(path: str, fd: int, extension: bytes, file_size: int) -> tuple[str, ...]:
    """The names in the bitmap directory that the bitmaps header extension points to."""
    if len(extension) < _BITMAPS_EXT.size:
        raise ImageError(path, "has a truncated bitmaps header extension (corrupt)")
    count, _reserved, size, offset = _BITMAPS_EXT.unpack_from(extension)
    if count == 0:
        return ()
    if count > _MAX_BITMAPS or offset + size > file_size:
        raise ImageError(path, f"has a corrupt bitmap directory ({count} bitmaps)")
    directory = _table(path, fd, offset, size, "bitmap directory")
    names: list[str] = []
    position = 0
    for _ in range(count):
        if position + _BITMAP.size > len(directory):
            raise ImageError(path, "has a bitmap directory that runs past its end (corrupt)")
        *_fields, name_size, extra_size = _BITMAP.unpack_from(directory, position)
        start = position + _BITMAP.size + extra_size
        if start + name_size > len(directory):
            raise ImageError(path, "has a bitmap directory that runs past its end (corrupt)")
        names.append(_text(path, directory[start : start + name_size], "bitmap name"))
        position += (_BITMAP.size + extra_size + name_size + 7) & ~7
    return tuple(names)
