"""A read-only qcow2 header reader: backing name and format, sizes, with every field checked."""

from __future__ import annotations

import os
import re
import stat
import struct

from backchain.core.errors import ImageError
from backchain.core.valueclass import replace, valueclass
from backchain.engines.files.qcow2_tables import SnapshotEntry, read_bitmap_names, read_snapshots

QCOW2_MAGIC = b"QFI\xfb"
_V2_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")
_V3_EXTRA = struct.Struct(">QQQII")
_EXTENSION = struct.Struct(">II")
_EXT_END = 0x00000000
_EXT_BACKING_FORMAT = 0xE2792ACA
_EXT_DATA_FILE = 0x44415441
_EXT_BITMAPS = 0x23852875
_AUTOCLEAR_BITMAPS = 1 << 0
# qemu refuses backing names longer than this; a larger field is a corrupt or hostile header.
_MAX_BACKING_NAME = 1023
_MAX_HEADER_READ = 1 << 16
_FIRST_READ = 4096
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@valueclass(frozen=True)
class Qcow2Header:
    """The fields of a qcow2 header that describe the image and its backing file."""

    path: str
    version: int
    virtual_size: int
    cluster_size: int
    backing_name: str | None
    backing_format: str | None
    data_file: str | None
    incompatible_features: int
    crypt_method: int = 0
    """0 for none, 1 for legacy AES, 2 for LUKS: an encrypted image needs a secret to open."""
    l1_size: int = 0
    l1_offset: int = 0
    """Where the L1 table lies, so that the allocation reader need not read the header again."""
    snapshot_count: int = 0
    snapshot_offset: int = 0
    bitmaps_extension: bytes | None = None
    """The bitmaps extension's payload, when QEMU would use it (autoclear bit set)."""
    snapshots: tuple[SnapshotEntry, ...] = ()
    bitmaps: tuple[str, ...] = ()


def is_qcow2(path: str) -> bool:
    """Whether the file starts with the qcow2 magic (False for unreadable files)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == QCOW2_MAGIC
    except OSError:
        return False


def unsafe_backing_reason(name: str) -> str | None:
    """Why a backing name must not be opened (json: or a network protocol), or None."""
    if name.startswith("json:"):
        return "its backing file is a json: specification, which Backchain does not open"
    match = _PROTOCOL.match(name)
    if match and not name.startswith("file:"):
        protocol = match.group(0)[:-1]
        return (
            f"its backing file uses the '{protocol}:' protocol ({name}); "
            "Backchain never opens network or protocol backings"
        )
    return None


def read_header(path: str) -> Qcow2Header:
    """Parse the header of a qcow2 file, or raise ImageError naming the file and the fault."""
    try:
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ImageError(path, f"is {kind}, not an image")
        with open(path, "rb") as handle:
            blob = handle.read(_FIRST_READ)
            file_size = os.fstat(handle.fileno()).st_size
            if len(blob) == _FIRST_READ and _needs_more(blob):
                blob += handle.read(_MAX_HEADER_READ - _FIRST_READ)
            header = parse_header(path, blob, file_size)
            return with_tables(header, handle.fileno(), file_size)
    except OSError as err:
        raise image_error_from_os(path, err) from err


def with_tables(header: Qcow2Header, fd: int, file_size: int) -> Qcow2Header:
    """The header with its snapshot table and bitmap names read from the open file."""
    snapshots = read_snapshots(
        header.path, fd, header.snapshot_count, header.snapshot_offset, header.virtual_size
    )
    bitmaps: tuple[str, ...] = ()
    if header.bitmaps_extension is not None:
        bitmaps = read_bitmap_names(header.path, fd, header.bitmaps_extension, file_size)
    if not snapshots and not bitmaps:
        return header
    return replace(header, snapshots=snapshots, bitmaps=bitmaps)


def image_error_from_os(path: str, err: OSError) -> ImageError:
    """The ImageError that says, in words, why opening or reading ``path`` failed."""
    if isinstance(err, IsADirectoryError):
        return ImageError(path, "is a directory, not an image")
    if isinstance(err, FileNotFoundError):
        return ImageError(path, "does not exist")
    if isinstance(err, PermissionError):
        return ImageError(path, "cannot be read (permission denied)")
    return ImageError(path, f"cannot be read ({err.strerror or err})")


def _needs_more(blob: bytes) -> bool:
    """Whether the backing name or the extensions may lie beyond the first read."""
    if len(blob) < _V2_HEADER.size or blob[:4] != QCOW2_MAGIC:
        return False
    fields = _V2_HEADER.unpack_from(blob)
    backing_offset, backing_size = fields[2], fields[3]
    if backing_offset == 0:
        return True  # extensions run until an end marker that may be further on
    return bool(backing_offset + backing_size > len(blob))


def parse_header(path: str, blob: bytes, file_size: int) -> Qcow2Header:
    """Parse header bytes (the first 64 KiB of the file) read from ``path``."""
    if len(blob) < 4 or blob[:4] != QCOW2_MAGIC:
        raise ImageError(path, "is not a qcow2 image (no qcow2 magic at the start)")
    if len(blob) < _V2_HEADER.size:
        raise ImageError(path, "has a truncated qcow2 header")
    (
        _magic, version, backing_offset, backing_size, cluster_bits, virtual_size,
        crypt_method, l1_size, l1_offset, _refcount_offset, _refcount_clusters,
        snapshots, snapshot_offset,
    ) = _V2_HEADER.unpack_from(blob)  # fmt: skip
    if version not in (2, 3):
        raise ImageError(path, f"has an unsupported qcow2 version {version}")
    if not 9 <= cluster_bits <= 21:
        raise ImageError(path, f"has a corrupt qcow2 header (cluster bits {cluster_bits})")
    if virtual_size > 1 << 62:
        raise ImageError(path, f"has a corrupt qcow2 header (virtual size {virtual_size})")
    header_length = _V2_HEADER.size
    incompatible = autoclear = 0
    if version == 3:
        if len(blob) < _V2_HEADER.size + _V3_EXTRA.size:
            raise ImageError(path, "has a truncated qcow2 version 3 header")
        incompatible, _compat, autoclear, _refcount_order, header_length = _V3_EXTRA.unpack_from(
            blob, _V2_HEADER.size
        )
        if header_length < _V2_HEADER.size + _V3_EXTRA.size or header_length > len(blob):
            raise ImageError(path, f"has a corrupt qcow2 header (header length {header_length})")

    backing_name: str | None = None
    if backing_offset:
        if backing_size == 0 or backing_size > _MAX_BACKING_NAME:
            raise ImageError(path, f"has a corrupt backing file name length ({backing_size})")
        end = backing_offset + backing_size
        if end > min(file_size, len(blob)) or backing_offset < header_length:
            raise ImageError(path, "has a backing file name outside its header (corrupt header)")
        try:
            backing_name = blob[backing_offset:end].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ImageError(path, "has a backing file name that is not valid UTF-8") from err
        if "\x00" in backing_name:
            raise ImageError(path, "has a backing file name with a NUL byte (corrupt header)")

    backing_format, data_file, bitmaps = _read_extensions(path, blob, header_length, backing_offset)
    return Qcow2Header(
        path=path,
        version=version,
        virtual_size=virtual_size,
        cluster_size=1 << cluster_bits,
        backing_name=backing_name,
        backing_format=backing_format,
        data_file=data_file,
        incompatible_features=incompatible,
        crypt_method=crypt_method,
        l1_size=l1_size,
        l1_offset=l1_offset,
        snapshot_count=snapshots,
        snapshot_offset=snapshot_offset,
        bitmaps_extension=bitmaps if autoclear & _AUTOCLEAR_BITMAPS else None,
    )


def _read_extensions(
    path: str, blob: bytes, offset: int, backing_offset: int
) -> tuple[str | None, str | None, bytes | None]:
    limit = backing_offset if backing_offset else len(blob)
    backing_format: str | None = None
    data_file: str | None = None
    bitmaps: bytes | None = None
    seen = 0
    while offset + _EXTENSION.size <= limit:
        kind, length = _EXTENSION.unpack_from(blob, offset)
        if kind == _EXT_END:
            break
        start = offset + _EXTENSION.size
        if start + length > limit:
            raise ImageError(path, "has a header extension that runs past its end (corrupt)")
        payload = blob[start : start + length]
        try:
            if kind == _EXT_BACKING_FORMAT:
                backing_format = payload.decode("ascii")
            elif kind == _EXT_DATA_FILE:
                data_file = payload.decode("utf-8")
            elif kind == _EXT_BITMAPS:
                bitmaps = payload
        except UnicodeDecodeError as err:
            raise ImageError(path, "has a header extension that is not valid text") from err
        offset = start + ((length + 7) & ~7)
        seen += 1
        if seen > 1024:
            raise ImageError(path, "has too many header extensions (corrupt header)")
    if backing_format is not None and not re.fullmatch(r"[a-z0-9_-]{1,32}", backing_format):
        raise ImageError(path, f"records an invalid backing format {backing_format!r}")
    return backing_format, data_file, bitmaps
