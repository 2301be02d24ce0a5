"""A small read-only NBD client: fixed newstyle handshake, meta contexts and block status."""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Sequence
from types import TracebackType

from backchain.core.errors import EngineError
from backchain.core.valueclass import valueclass

ALLOCATION_DEPTH = "qemu:allocation-depth"
"""QEMU's context: 0 unallocated, 1 allocated in the exported node, N in its (N-1)th backing."""
BASE_ALLOCATION = "base:allocation"
"""The standard context: bit 0 a hole, bit 1 reads as zeros."""
STATE_ZERO = 2

_NBDMAGIC = 0x4E42444D41474943
_IHAVEOPT = 0x49484156454F5054
_OPTION_REPLY_MAGIC = 0x3E889045565A9
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY_MAGIC = 0x67446698
_STRUCTURED_REPLY_MAGIC = 0x668E33EF

_FLAG_FIXED_NEWSTYLE = 1
_FLAG_NO_ZEROES = 2

_OPT_ABORT = 2
_OPT_GO = 7
_OPT_STRUCTURED_REPLY = 8
_OPT_SET_META_CONTEXT = 10

_REP_ACK = 1
_REP_INFO = 3
_REP_META_CONTEXT = 4
_REP_ERROR_BIT = 1 << 31

_INFO_EXPORT = 0
_INFO_BLOCK_SIZE = 3

_CMD_DISC = 2
_CMD_BLOCK_STATUS = 7

_REPLY_FLAG_DONE = 1
_REPLY_TYPE_NONE = 0
_REPLY_TYPE_BLOCK_STATUS = 5
_REPLY_TYPE_ERROR_BIT = 1 << 15

_MAX_LENGTH = 0xFFFFFFFF
"""A request's length field is 32 bits."""
_MAX_OPTION_REPLY = 1 << 20
"""No reply this client asks for is anywhere near this long; a longer one is a broken server."""

_OPTION_REPLY = struct.Struct(">QIII")
_REQUEST = struct.Struct(">IHHQQI")
_CHUNK = struct.Struct(">HHQI")


class NbdError(EngineError):
    """The NBD server refused a step, or broke the protocol; ``message`` says which."""


@valueclass(frozen=True)
class Extent:
    """One block status descriptor: ``length`` bytes from ``offset`` with ``flags``."""

    offset: int
    length: int
    flags: int


@valueclass(frozen=True)
class Export:
    """What NBD_OPT_GO told about the export."""

    size: int
    transmission_flags: int
    minimum_block: int = 1
    maximum_block: int = 32 << 20
    contexts: tuple[tuple[int, str], ...] = ()
    """The meta contexts the server agreed to, as (id, name)."""


class NbdClient:
    """One connection to one export, with blocking I/O and a timeout on every read."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self._sock = sock
        self._where = where
        self._cookies = itertools.count(1)
        self.export: Export | None = None

    @classmethod
    def connect_unix(cls, path: str, timeout: float = 30.0) -> NbdClient:
        """Connect to a server on a unix socket (the handshake is ``negotiate``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise NbdError(f"cannot connect to the NBD server at {path}: {exc}") from exc
        return cls(sock, path)

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- raw I/O --------------------------------------------------------------------------

    def _fail(self, what: str, cause: BaseException | None = None) -> NbdError:
        return NbdError(f"NBD server at {self._where}: {what}", stderr=str(cause or ""))

    def _recv(self, count: int) -> bytes:
        parts: list[bytes] = []
        left = count
        while left:
            try:
                part = self._sock.recv(min(left, 1 << 20))
            except OSError as exc:
                raise self._fail("the connection failed", exc) from exc
            if not part:
                raise self._fail("the server closed the connection")
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise self._fail("the connection failed", exc) from exc

    # -- handshake ------------------------------------------------------------------------

    def negotiate(self, name: str, contexts: Sequence[str]) -> Export:
        """Fixed newstyle handshake, structured replies, the meta contexts, then NBD_OPT_GO."""
        magic, opt_magic, flags = struct.unpack(">QQH", self._recv(18))
        if magic != _NBDMAGIC or opt_magic != _IHAVEOPT:
            raise self._fail("is not a newstyle NBD server")
        if not flags & _FLAG_FIXED_NEWSTYLE:
            raise self._fail("does not speak fixed newstyle negotiation")
        self._send(struct.pack(">I", _FLAG_FIXED_NEWSTYLE | (flags & _FLAG_NO_ZEROES)))
        self._expect_ack(_OPT_STRUCTURED_REPLY, b"", "structured replies")
        agreed = self._set_meta_contexts(name, contexts)
        missing = [c for c in contexts if c not in {n for _, n in agreed}]
        if missing:
            raise self._fail(f"does not offer the meta context {missing[0]} on export '{name}'")
        export = self._go(name)
        self.export = Export(export.size, export.transmission_flags, export.minimum_block,
                             export.maximum_block, agreed)  # fmt: skip
        return self.export

    def _option(self, option: int, data: bytes) -> None:
        self._send(struct.pack(">QII", _IHAVEOPT, option, len(data)) + data)

    def _option_reply(self, option: int) -> tuple[int, bytes]:
        magic, replied, kind, length = _OPTION_REPLY.unpack(self._recv(_OPTION_REPLY.size))
        if magic != _OPTION_REPLY_MAGIC or replied != option:
            raise self._fail(f"sent a malformed reply to option {option}")
        if length > _MAX_OPTION_REPLY:
            raise self._fail(f"sent a {length}-byte reply to option {option}")
        payload = self._recv(length)
        if kind & _REP_ERROR_BIT:
            text = payload.decode("utf-8", "replace")
            error = kind & ~_REP_ERROR_BIT
            raise self._fail(f"refused option {option} (error {error})" + _said(text))
        return kind, payload

    def _expect_ack(self, option: int, data: bytes, what: str) -> None:
        self._option(option, data)
        kind, _ = self._option_reply(option)
        if kind != _REP_ACK:
            raise self._fail(f"answered {what} with reply type {kind}")

    def _set_meta_contexts(self, name: str, contexts: Sequence[str]) -> tuple[tuple[int, str], ...]:
        raw = name.encode()
        queries = b"".join(struct.pack(">I", len(c.encode())) + c.encode() for c in contexts)
        data = struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(contexts)) + queries
        self._option(_OPT_SET_META_CONTEXT, data)
        agreed: list[tuple[int, str]] = []
        while True:
            kind, payload = self._option_reply(_OPT_SET_META_CONTEXT)
            if kind == _REP_ACK:
                return tuple(agreed)
            if kind != _REP_META_CONTEXT or len(payload) < 4:
                raise self._fail(f"answered the meta contexts with reply type {kind}")
            (context_id,) = struct.unpack_from(">I", payload)
            agreed.append((context_id, payload[4:].decode("utf-8", "replace")))

    def _go(self, name: str) -> Export:
        raw = name.encode()
        self._option(
            _OPT_GO, struct.pack(">I", len(raw)) + raw + struct.pack(">HH", 1, _INFO_BLOCK_SIZE)
        )
        size: int | None = None
        flags = 0
        minimum, maximum = 1, 32 << 20
        while True:
            kind, payload = self._option_reply(_OPT_GO)
            if kind == _REP_ACK:
                break
            if kind != _REP_INFO or len(payload) < 2:
                raise self._fail(f"answered NBD_OPT_GO with reply type {kind}")
            (info,) = struct.unpack_from(">H", payload)
            if info == _INFO_EXPORT and len(payload) >= 12:
                size, flags = struct.unpack_from(">QH", payload, 2)
            elif info == _INFO_BLOCK_SIZE and len(payload) >= 14:
                minimum, _, maximum = struct.unpack_from(">III", payload, 2)
        if size is None:
            raise self._fail(f"did not tell the size of export '{name}'")
        return Export(size, flags, max(1, minimum), max(minimum, maximum))

    # -- transmission ---------------------------------------------------------------------

    def block_status(self, offset: int, length: int) -> dict[int, list[Extent]]:
        """One NBD_CMD_BLOCK_STATUS: each agreed context's descriptors from ``offset``.

        The server may describe less than ``length``; it describes at least one descriptor.
        """
        if not 0 < length <= _MAX_LENGTH:
            raise ValueError(f"a block status length must fit in 32 bits, not {length}")
        cookie = next(self._cookies)
        self._send(_REQUEST.pack(_REQUEST_MAGIC, 0, _CMD_BLOCK_STATUS, cookie, offset, length))
        found: dict[int, list[Extent]] = {}
        while True:
            (magic,) = struct.unpack(">I", self._recv(4))
            if magic == _SIMPLE_REPLY_MAGIC:
                error, handle = struct.unpack(">IQ", self._recv(12))
                self._check_cookie(handle, cookie)
                if error:
                    raise self._fail(f"refused block status at {offset} (error {error})")
                raise self._fail("answered block status without any descriptor")
            if magic != _STRUCTURED_REPLY_MAGIC:
                raise self._fail(f"sent a reply with the unknown magic {magic:#x}")
            flags, kind, handle, size = _CHUNK.unpack(self._recv(_CHUNK.size))
            self._check_cookie(handle, cookie)
            payload = self._recv(size)
            if kind & _REPLY_TYPE_ERROR_BIT:
                raise self._chunk_error(kind, payload, offset)
            if kind == _REPLY_TYPE_BLOCK_STATUS:
                context, extents = _descriptors(payload, offset)
                if not extents:
                    raise self._fail("sent a block status chunk without descriptors")
                found[context] = extents
            elif kind != _REPLY_TYPE_NONE:
                raise self._fail(f"sent the unexpected chunk type {kind} to block status")
            if flags & _REPLY_FLAG_DONE:
                return found

    def _check_cookie(self, handle: int, cookie: int) -> None:
        if handle != cookie:
            raise self._fail(f"answered request {handle}, but {cookie} was the one in flight")

    def _chunk_error(self, kind: int, payload: bytes, offset: int) -> NbdError:
        if len(payload) < 6:
            return self._fail(f"sent a short error chunk (type {kind})")
        error, length = struct.unpack_from(">IH", payload)
        text = payload[6 : 6 + length].decode("utf-8", "replace")
        return self._fail(f"failed block status at {offset} (error {error})" + _said(text))

    def map_contexts(self, step: int | None = None) -> dict[str, list[Extent]]:
        """Every agreed context's descriptors over the whole export, in order, without gaps.

        Requests stay within 32 bits and the server's maximum block size, aligned to its
        minimum; each next request starts where the shortest context's answer ended, so that
        every context is described over the same ranges.
        """
        export = self.export
        if export is None:
            raise self._fail("no export was negotiated")
        names = dict(export.contexts)
        found: dict[str, list[Extent]] = {name: [] for name in names.values()}
        align = export.minimum_block
        chunk = min(step or export.maximum_block, export.maximum_block, _MAX_LENGTH)
        chunk = max(align, chunk // align * align)
        offset = 0
        while offset < export.size:
            answer = self.block_status(offset, min(chunk, export.size - offset))
            if set(answer) != set(names):
                raise self._fail(f"answered block status at {offset} for contexts "
                                 f"{sorted(answer)}, not {sorted(names)}")  # fmt: skip
            end = min(export.size, *(x[-1].offset + x[-1].length for x in answer.values()))
            for context, extents in answer.items():
                _append(found[names[context]], extents, end)
            offset = end
        return found

    def disconnect(self) -> None:
        """NBD_CMD_DISC (no reply comes), then close."""
        try:
            self._send(_REQUEST.pack(_REQUEST_MAGIC, 0, _CMD_DISC, next(self._cookies), 0, 0))
        except NbdError:
            pass  # the server is gone already; there is nothing left to end
        self.close()

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._sock.close()


def _descriptors(payload: bytes, offset: int) -> tuple[int, list[Extent]]:
    if len(payload) < 4 or (len(payload) - 4) % 8:
        raise NbdError(f"a block status chunk of {len(payload)} bytes is malformed")
    (context,) = struct.unpack_from(">I", payload)
    extents: list[Extent] = []
    at = offset
    for length, flags in struct.iter_unpack(">II", payload[4:]):
        if length == 0:
            raise NbdError("a block status descriptor of length 0 is malformed")
        extents.append(Extent(at, length, flags))
        at += length
    return context, extents


def _append(into: list[Extent], extents: Sequence[Extent], end: int) -> None:
    """Add descriptors up to ``end``, merging with the previous one where the flags agree."""
    for extent in extents:
        if extent.offset >= end:
            return
        length = min(extent.length, end - extent.offset)
        last = into[-1] if into else None
        if (
            last is not None
            and last.flags == extent.flags
            and last.offset + last.length == extent.offset
        ):
            into[-1] = Extent(last.offset, last.length + length, last.flags)
        else:
            into.append(Extent(extent.offset, length, extent.flags))


def _said(text: str) -> str:
    return f": {text}" if text else ""
