"""A node's own allocation asked of QEMU itself, through a private read-only NBD export.

QEMU may hold writes to the active layer in its cache, so the file's L2 tables can miss them;
QEMU's ``qemu:allocation-depth`` context counts them. The export lives on an NBD server that we
start on a unix socket in a private directory, and both are removed again before we return.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping

from backchain.core.errors import EngineError
from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, Layer, LiveWrites
from backchain.core.valueclass import replace, valueclass
from backchain.engines.qmp.nbd_client import (
    ALLOCATION_DEPTH,
    BASE_ALLOCATION,
    STATE_ZERO,
    NbdClient,
)
from backchain.engines.qmp.session import QmpSession, parse_address

PAUSED = frozenset({"paused", "prelaunch"})
"""Run states in which the guest cannot write: a plan made now stays exact until it resumes."""

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class Unavailable(EngineError):
    """QEMU could not report the allocation; ``message`` says why, for the plan's notes."""


@valueclass(frozen=True)
class Reading:
    """A node's own allocation (data and zero clusters) and the part that reads as zeros."""

    extents: ExtentSet
    zeros: ExtentSet
    leftovers: tuple[str, ...] = ()
    """What QEMU refused to remove again (an export, the server), in words."""


def on_this_machine(address: str) -> bool:
    """Whether QMP is reached locally, so that a unix socket QEMU makes is one we can open."""
    where = parse_address(address)
    return isinstance(where, str) or where[0] in _LOOPBACK or where[0].startswith("127.")


async def run_state(session: QmpSession) -> str:
    """QEMU's run state (``running``, ``paused``, ``prelaunch``, ...)."""
    answer = await session.execute("query-status")
    return str(answer.get("status") or "") if isinstance(answer, dict) else ""


def _own_allocation(found: dict[str, list[tuple[int, int, int]]]) -> tuple[ExtentSet, ExtentSet]:
    """Depth 1 is the exported node itself; of that, what base:allocation says reads as zeros."""
    own = ExtentSet.from_ranges((o, n) for o, n, depth in found[ALLOCATION_DEPTH] if depth == 1)
    zero = ExtentSet.from_ranges(
        (o, n) for o, n, flags in found[BASE_ALLOCATION] if flags & STATE_ZERO
    )
    return own, own.intersection(zero)


def _read_export(path: str, name: str, timeout: float) -> dict[str, list[tuple[int, int, int]]]:
    """Both contexts over the whole export (blocking reads, each with the timeout)."""
    with NbdClient.connect_unix(path, timeout) as client:
        client.negotiate(name, [ALLOCATION_DEPTH, BASE_ALLOCATION])
        found = client.map_contexts()
        client.disconnect()
    return {ctx: [(e.offset, e.length, e.flags) for e in runs] for ctx, runs in found.items()}


async def _start_server(session: QmpSession, path: str) -> None:
    try:
        await session.execute(
            "nbd-server-start", {"addr": {"type": "unix", "data": {"path": path}}}
        )
    except EngineError as err:
        if "already running" in err.message.lower():
            raise Unavailable(
                "QEMU already runs an NBD server (someone else's; it was left running)"
            ) from err
        raise Unavailable(f"QEMU could not start an NBD server: {err.message}") from err


async def _remove_export(session: QmpSession, export: str) -> list[str]:
    """block-export-del; an export still busy with our closing connection is removed hard."""
    try:
        await session.execute("block-export-del", {"id": export})
        return []
    except EngineError:
        pass
    try:
        # The export is private to us: "hard" only drops our own, already closed connection.
        await session.execute("block-export-del", {"id": export, "mode": "hard"})
        return []
    except EngineError as err:
        return [f"QEMU kept the NBD export '{export}' ({err.message})"]


async def _cleanup(session: QmpSession, export: str | None, started: bool) -> list[str]:
    left: list[str] = []
    if export is not None:
        left += await _remove_export(session, export)
    if started:
        try:
            await session.execute("nbd-server-stop")
        except EngineError as err:
            left.append(f"QEMU kept the NBD server it started for us ({err.message})")
    if export is not None:
        try:
            exports = await session.execute("query-block-exports")
        except EngineError:
            exports = []
        if any(isinstance(e, dict) and e.get("id") == export for e in exports or []):
            left.append(f"QEMU still lists the NBD export '{export}'")
    return left


async def read_node_allocation(session: QmpSession, node: str) -> Reading:
    """The node's own allocation as QEMU sees it now, cached writes included.

    Raises Unavailable with the reason when QEMU cannot tell (an NBD server of someone else's
    is running, an old QEMU, a socket on another machine); whatever we started is removed.
    """
    if not on_this_machine(session.address):
        raise Unavailable(
            f"QMP is reached over TCP at {session.address}, so QEMU's NBD socket would be on "
            "another machine"
        )
    directory = tempfile.mkdtemp(prefix="backchain-nbd-")  # 0700: only we can connect
    path = os.path.join(directory, "nbd.sock")
    export = f"backchain-{os.getpid()}-{secrets.token_hex(4)}"
    started, exported = False, False
    found: dict[str, list[tuple[int, int, int]]] = {}
    failed: Unavailable | None = None
    try:
        await _start_server(session, path)
        started = True
        arguments = {"type": "nbd", "id": export, "node-name": node, "name": export,
                     "writable": False, "allocation-depth": True}  # fmt: skip
        try:
            await session.execute("block-export-add", arguments)
        except EngineError as err:
            raise Unavailable(f"QEMU could not export node '{node}': {err.message}") from err
        exported = True
        try:
            # Read in this thread: QEMU serves NBD from its own main loop, so nothing waits on
            # our QMP loop meanwhile, and no extra thread is started inside a worker thread.
            found = _read_export(path, export, session.timeout)
        except EngineError as err:
            raise Unavailable(f"reading QEMU's NBD export failed: {err.message}") from err
    except Unavailable as err:
        failed = err
    finally:
        left = await _cleanup(session, export if exported else None, started)
        shutil.rmtree(directory, ignore_errors=True)
    if failed is not None:
        raise Unavailable("; ".join([failed.message, *left]), stderr=failed.stderr) from failed
    extents, zeros = _own_allocation(found)
    return Reading(extents, zeros, tuple(left))


def _words(node: str, state: str, reading: Reading | None, why: str = "") -> LiveWrites:
    """The layer fact the planner reads: exact only from QEMU itself while the guest is stopped."""
    running = state not in PAUSED
    if reading is None:
        guest = ", and the guest writes during the job" if running else ""
        return LiveWrites(False, (
            f"QEMU could not report the allocation of '{node}' ({why}), so it was read from "
            f"disk: QEMU may still cache writes to it{guest}; bytes to copy and every figure "
            "that depends on it are lower bounds"))  # fmt: skip
    left = "".join(f"; {text}" for text in reading.leftovers)
    if running:
        return LiveWrites(False, (
            f"the allocation of '{node}' was read from QEMU at plan time, but the VM is "
            f"{state or 'running'} and its guest keeps writing during the job: bytes to copy "
            f"and every figure that depends on it are lower bounds{left}"))  # fmt: skip
    return LiveWrites(True, (
        f"the allocation of '{node}' was read from QEMU itself while the VM is {state}: "
        f"the figures are exact until it resumes{left}"))  # fmt: skip


async def from_the_writer(
    session: QmpSession, graph: ImageGraph, written: Mapping[str, str]
) -> ImageGraph:
    """The graph with each layer that QEMU writes (path -> node) read from QEMU itself.

    Each such layer records how far its figures hold (``Layer.live_writes``); where QEMU cannot
    tell, the disk's reading stays, marked as a lower bound with the reason.
    """
    # A chain in a block job is refused by the planner: no export is added to it meanwhile.
    targets = [(graph.layer(path), node) for path, node in written.items()
               if path in graph and not graph.layer(path).block_job]  # fmt: skip
    if not targets:
        return graph
    try:
        state = await run_state(session)
    except EngineError:
        state = ""  # unknown: treated as running, so nothing is claimed exact
    layers: list[Layer] = []
    for layer, node in targets:
        try:
            reading = await read_node_allocation(session, node)
        except Unavailable as err:
            layers.append(replace(layer, live_writes=_words(node, state, None, err.message)))
            continue
        layers.append(replace(layer, extents=reading.extents, zeros=reading.zeros,
                              live_writes=_words(node, state, reading)))  # fmt: skip
    return graph.with_layers(layers)
