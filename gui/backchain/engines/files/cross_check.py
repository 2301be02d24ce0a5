"""qemu-img's reading of a chain, checked against the headers; started early if asked."""

from __future__ import annotations

from backchain.core.errors import EngineError, ImageError
from backchain.core.graph import ImageGraph, Layer
from backchain.core.valueclass import replace
from backchain.engines.files import qemu_info as qemu_img


def merge_qemu_info(layers: list[Layer], started: qemu_img.ChainInfo | None = None) -> list[Layer]:
    """``layers`` (top first, from the headers) with qemu-img's sizes; refuses a chain that
    qemu-img sees differently, or a layer it finds corrupt. ``started`` is qemu-img's reading
    of the chain if it was started already."""
    top = layers[0]
    try:
        reading = started if started is not None else qemu_img.ChainInfo(top.path, top.format)
        infos = reading.result()
    except EngineError as err:
        raise ImageError(top.path, f"qemu-img cannot read its chain: {err.message}") from err
    if len(infos) != len(layers):
        raise ImageError(top.path, "qemu-img sees a different backing chain than the headers say")
    merged = []
    for layer, info in zip(layers, infos, strict=True):
        specific = info.get("format-specific", {}).get("data", {})
        if specific.get("corrupt"):
            raise ImageError(layer.path, "is marked corrupt (run qemu-img check -r)")
        merged.append(
            replace(
                layer,
                virtual_size=int(info.get("virtual-size", layer.virtual_size)),
                actual_size=int(info.get("actual-size", layer.actual_size or 0)),
                cluster_size=info.get("cluster-size", layer.cluster_size),
            )
        )
    return merged


class ChainCheck:
    """merge_qemu_info(layers), with qemu-img started now and read when merged() asks, so that
    it runs while the caller reads the rest of the graph. Errors wait for merged() too."""

    def __init__(self, layers: list[Layer]) -> None:
        self._layers = layers
        self._merged: list[Layer] | None = None
        self._error: BaseException | None = None
        self._started: qemu_img.ChainInfo | None = None
        top = layers[0]
        try:
            self._started = qemu_img.ChainInfo(top.path, top.format)
        except EngineError:
            self._started = None  # merged() starts it again, and words the failure

    def merged(self) -> list[Layer]:
        """The merged layers, or the error qemu-img's reading raised (the same on each call)."""
        if self._merged is None and self._error is None:
            try:
                self._merged = merge_qemu_info(self._layers, self._started)
            except BaseException as err:
                self._error = err
        if self._error is not None:
            raise self._error
        assert self._merged is not None
        return self._merged

    def applied_to(self, graph: ImageGraph) -> ImageGraph:
        """``graph`` with qemu-img's sizes on the chain's layers (the same graph if unchanged)."""
        changed = []
        for seen in self.merged():
            layer = graph.layer(seen.path)
            sizes = (seen.virtual_size, seen.actual_size, seen.cluster_size)
            if sizes != (layer.virtual_size, layer.actual_size, layer.cluster_size):
                changed.append(replace(layer, virtual_size=seen.virtual_size,
                                       actual_size=seen.actual_size,
                                       cluster_size=seen.cluster_size))  # fmt: skip
        return graph.with_layers(changed) if changed else graph
