"""Letting go of a deleted file's nodes: QEMU closes the nodes it opened itself, and
``blockdev-del`` removes the ones its monitor owns once nothing uses them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from qemu.qmp import ExecuteError

from backchain.core.errors import EngineError
from backchain.core.graph import Layer
from backchain.core.model import Operation, Step
from backchain.engines.base import QmpTarget
from backchain.engines.progress import ProgressSink
from backchain.engines.qmp.graph import file_path_of
from backchain.engines.qmp.session import QmpSession

POLL_SECONDS = 0.2


def own_node(layer: Layer) -> str | None:
    """The node name of a layer given to QEMU as a node of its own (-blockdev, blockdev-add).

    QEMU names the nodes it opens from a header's backing name itself (``#block123``); those
    close on their own once nothing uses them, and the monitor cannot remove them.
    """
    name = layer.node_name
    return name if name and not name.startswith("#") else None


def _holders(nodes: Sequence[Mapping[str, Any]], path: str) -> list[str]:
    """The nodes that open ``path``: its format node and its protocol node alike."""
    return [
        str(n.get("node-name"))
        for n in nodes
        if os.path.realpath(file_path_of(str(n.get("file") or ""))) == path
    ]


def _unused(graph: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """Those of ``names`` that no node, device, export or job uses (no parent edge)."""
    ids = {int(n["id"]): str(n.get("name")) for n in graph.get("nodes") or []}
    used = {ids.get(int(edge["child"])) for edge in graph.get("edges") or []}
    return [name for name in names if name not in used]


def _users(graph: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """Who still uses the nodes ``names`` (parents outside them), for the failure's words."""
    ids = {int(n["id"]): str(n.get("name")) for n in graph.get("nodes") or []}
    users = []
    for edge in graph.get("edges") or []:
        parent, child = ids.get(int(edge["parent"])), ids.get(int(edge["child"]))
        if child in names and parent not in names and parent is not None:
            users.append(f"{parent} ({edge.get('name')})")
    return sorted(set(users))


async def _release(session: QmpSession, holders: Sequence[str], sink: ProgressSink) -> str | None:
    """Remove the holders nothing uses; returns why the rest stay, or None if one went."""
    try:
        graph = await session.execute("x-debug-query-block-graph")
    except ExecuteError as err:
        return f"QEMU cannot show its block graph ({err.error.error.desc})"
    free = _unused(graph, holders)
    said = ""
    for name in free:
        try:
            await session.execute("blockdev-del", {"node-name": name})
        except ExecuteError as err:
            # A node QEMU opened itself is closed by QEMU itself; anything else is QEMU's word.
            said = err.error.error.desc
            continue
        sink.logged(f"QEMU removed node {name} (blockdev-del): nothing used it any more")
        return None
    users = _users(graph, holders)
    return said or ("used by " + ", ".join(users) if users else "")


async def delete_when_closed(
    target: QmpTarget, step: Step, sink: ProgressSink, operation: Operation
) -> None:
    """Remove a file the plan deletes, once QEMU no longer opens it.

    Nodes QEMU opened from the chain's headers close when the job lets go of them. A node of its
    own (-blockdev) stays until it is removed, so it is removed here with ``blockdev-del``, the
    format node first and then a protocol node of its own, and only when no parent edge in
    QEMU's block graph shows a device, export, job or other node using it (QEMU refuses the
    removal of a node in use as well).
    """
    path = os.path.realpath(step.target)
    async with QmpSession(target.address, target.timeout) as session:
        deadline = time.monotonic() + target.close_wait
        while True:
            holders = _holders(await session.execute("query-named-block-nodes"), path)
            if not holders:
                break
            why = await _release(session, holders, sink)
            if why is None:
                continue  # one node went: look again at once for the protocol node below it
            if time.monotonic() > deadline:
                because = f" ({why})" if why else ""
                raise EngineError(
                    f"the {operation.value} succeeded, but QEMU still opens {path}{because}, so "
                    "it was not deleted. Stop what uses it (or the VM), then delete it."
                )
            await asyncio.sleep(POLL_SECONDS)
    try:
        os.remove(step.target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise EngineError(f"cannot delete {step.target}: {exc.strerror}") from exc
    sink.logged(f"deleted {step.target}")
