"""A running QEMU through its QMP socket: the live graph, ACTIVE for its active layer, speed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backchain.core.errors import BackchainError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind
from backchain.core.valueclass import replace
from backchain.engines.base import QmpTarget
from backchain.engines.registry import make_plan
from backchain.ui.background import run_in_background
from backchain.ui.sources import SourceEvents
from backchain.ui.wording import humane_error

if TYPE_CHECKING:
    # qemu.qmp (with asyncio and ssl) is imported on connecting, not when the window opens.
    from backchain.engines.qmp.job import QmpJobControl


class QmpSource:
    """One device of a running VM; its job is steered through one QmpJobControl."""

    engine = EngineKind.QMP
    live_speed = True

    def __init__(self, address: str, device: str | None, events: SourceEvents) -> None:
        self.address = address
        self.device = device
        self._events = events
        from backchain.engines.qmp.job import QmpJobControl

        self._control: QmpJobControl = QmpJobControl(address)
        self.label = device or address

    @property
    def control(self) -> QmpJobControl:
        """The live control of this QEMU's job (speed, pivot or keep)."""
        return self._control

    @property
    def target(self) -> QmpTarget:
        """The runner's target: the socket, steered by this source's live control."""
        return self._control.target()

    @property
    def title(self) -> str:
        """``vd0 on /run/vm/qmp.sock``."""
        return f"{self.label} on {self.address}"

    @property
    def where(self) -> str:
        """The socket."""
        return self.address

    def reload(self) -> None:
        """Read the live graph in the background."""
        address, device = self.address, self.device
        self._events.status(f"Reading the live graph from {address}…")

        def work(_report: object) -> tuple[ImageGraph, str]:  # runs in a pool thread
            from backchain.engines.qmp.engine import QmpEngine
            from backchain.engines.qmp.graph import root_for

            # The live graph, and the images on disk that share its layers (QEMU knows only
            # the ones it opened).
            graph = QmpEngine().read_graph(QmpTarget(address))
            return graph, root_for(graph, device).path

        run_in_background(work, on_result=self._on_read, on_error=self._on_failed)

    def _on_read(self, result: tuple[ImageGraph, str]) -> None:
        graph, root = result
        layer = graph.layer(root)
        self.label = layer.extra.get("device") or layer.node_name or self.label
        self._events.shown(self, graph, root, "extents")
        self._events.status(f"Live: {len(graph)} nodes of {self.label} at {self.address}")

    def _on_failed(self, error: BaseException) -> None:
        summary = error.summary if isinstance(error, BackchainError) else str(error)
        details = error.details if isinstance(error, BackchainError) else ""
        human, extra = humane_error(summary)
        self._events.failed(self, human, "\n".join(t for t in (extra, details) if t))

    def adjust(self, request: CommitRequest) -> CommitRequest:
        """Selecting the running VM's active layer as top means an active commit."""
        top = request.top or request.image
        return replace(request, active=top == request.image)

    def prepare(self, graph: ImageGraph, request: CommitRequest) -> CommitPlan:
        """core.plan with the request as adjusted."""
        return make_plan(graph, request)

    def set_speed(self, bytes_per_second: int) -> None:
        """block-job-set-speed at the job's next poll."""
        self._control.set_speed(bytes_per_second)
