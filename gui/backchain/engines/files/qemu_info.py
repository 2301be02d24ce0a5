"""What qemu-img says about images: chain info and one layer's allocation map (read-only, -U)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from backchain.core.errors import EngineError
from backchain.core.extents import ExtentSet
from backchain.core.static_typing import TYPE_CHECKING
from backchain.engines.process import ReadingCommand, qemu_img_binary, run

if TYPE_CHECKING:
    from typing import Any


def info_chain(path: str, fmt: str) -> list[dict[str, Any]]:
    """``qemu-img info --backing-chain --output=json -U``: one dict per layer, top first."""
    return ChainInfo(path, fmt).result()


class ChainInfo:
    """info_chain(path, fmt), started now and read by result(): it runs while the caller works."""

    def __init__(self, path: str, fmt: str) -> None:
        argv = [qemu_img_binary(), "info", "--backing-chain", "--output=json", "-U", "-f", fmt]
        self._command = ReadingCommand([*argv, path])

    def result(self) -> list[dict[str, Any]]:
        """One dict per layer, top first; EngineError when qemu-img failed."""
        out = self._command.output()
        try:
            parsed = json.loads(out)
        except json.JSONDecodeError as err:
            raise EngineError("qemu-img info printed something that is not JSON",
                              stderr=out) from err  # fmt: skip
        return list(parsed) if isinstance(parsed, list) else [parsed]


def layer_spec(path: str, fmt: str) -> str:
    """A ``json:`` spec that opens one layer alone, with no backing file."""
    spec: dict[str, object] = {"driver": fmt, "file": {"driver": "file", "filename": path}}
    if fmt == "qcow2":
        spec["backing"] = None
    return "json:" + json.dumps(spec)


def own_extents(path: str, fmt: str) -> ExtentSet:
    """The extents the layer defines itself (data or zero clusters), from ``qemu-img map``."""
    out = run([qemu_img_binary(), "map", "--output=json", "-U", layer_spec(path, fmt)])
    return extents_from_map(json.loads(out))


def extents_from_map(entries: Sequence[dict[str, Any]]) -> ExtentSet:
    """Present depth-0 entries of ``qemu-img map --output=json`` are the layer's own allocation.

    With ``"backing": null`` an unallocated region also reads as zeros at depth 0, but it is
    not ``present``; data and zero clusters that the layer defines itself are.
    """
    ranges = []
    for entry in entries:
        if entry.get("depth", 0) != 0:
            continue
        present = entry.get("present", bool(entry.get("data")))
        if present:
            ranges.append((int(entry["start"]), int(entry["length"])))
    return ExtentSet.from_ranges(ranges)
