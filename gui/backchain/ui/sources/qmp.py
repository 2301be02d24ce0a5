"""A running QEMU through its QMP socket: the live graph, ACTIVE for its active layer, speed."""

from __future__ import annotations

from dataclasses import replace

from backchain.core.errors import BackchainError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind
from backchain.core.plan import plan as make_plan
from backchain.engines.qmp import read_qmp_graph, root_for
from backchain.engines.qmp_jobs import QmpJobControl
from backchain.ui.background import run_in_background
from backchain.ui.sources import SourceEvents
from backchain.ui.wording import humane_error


class QmpSource:
    """One device of a running VM; its job is steered through one QmpJobControl."""

    engine = EngineKind.QMP
    live_speed = True

    def __init__(self, address: str, device: str | None, events: SourceEvents) -> None:
        self.address = address
        self.device = device
        self._events = events
        self._control = QmpJobControl(address)
        self.label = device or address

    @property
    def target(self) -> QmpJobControl:
        """The runner's connection: the address plus the live control of the job."""
        return self._control

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
            graph = read_qmp_graph(address)
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
