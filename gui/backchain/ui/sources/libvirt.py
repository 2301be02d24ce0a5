"""One disk of a libvirt domain: the engine's own plans, re-point when shut off, live speed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backchain.core.errors import BackchainError, PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind
from backchain.core.valueclass import replace
from backchain.engines.libvirt.engine import LibvirtTarget, active_layer, plan_for_graph
from backchain.engines.libvirt.read import domain_graph, is_local
from backchain.engines.libvirt.snapshot_xml import (
    Snapshot,
    SnapshotGuardError,
    attach,
    dropped_snapshots,
)
from backchain.engines.libvirt.snapshots import read_snapshots
from backchain.ui.background import run_in_background
from backchain.ui.libvirt_guard import window_words
from backchain.ui.sources import SourceEvents

GuardReport = Callable[[CommitRequest, tuple[str, ...]], None]
"""(the request as planned, the snapshots it breaks): for the window's guard box."""


def read_disk_and_snapshots(target: LibvirtTarget) -> tuple[ImageGraph, Any, bool, Any]:
    """The disk's graph with each layer's libvirt snapshots, and the snapshots (pool thread)."""
    graph, info, running = domain_graph(target.uri, target.domain, target.disk)
    snapshots = read_snapshots(target.uri, target.domain)
    return attach(graph, snapshots), info, running, snapshots


class LibvirtSource:
    """A disk's chain as libvirt describes it; plans come from the libvirt engine's rules."""

    def __init__(
        self,
        target: LibvirtTarget,
        events: SourceEvents,
        repoint: Callable[[], bool],
        set_speed: Callable[[LibvirtTarget, int], None],
        on_read: Callable[[LibvirtSource], None],
        drop_metadata: Callable[[], bool] = lambda: False,
        on_guard: GuardReport | None = None,
    ) -> None:
        self._target = target
        self._events = events
        self._repoint = repoint
        self._set_speed = set_speed
        self._on_read_done = on_read
        self._drop_metadata = drop_metadata
        self._on_guard = on_guard
        self.info: Any = None
        self.running = False
        self.snapshots: tuple[Snapshot, ...] = ()
        """The domain's libvirt snapshots as last read: the guard's and the cards' data."""

    @property
    def engine(self) -> EngineKind:
        """Running: virDomainBlockCommit. Shut off: qemu-img steps, wrapped by the engine."""
        return EngineKind.LIBVIRT if self.running else EngineKind.QEMU_IMG

    @property
    def live_speed(self) -> bool:
        """virDomainBlockJobSetSpeed works while a running domain's job goes on."""
        return self.running

    @property
    def target(self) -> LibvirtTarget:
        """The runner's connection: URI, domain and disk."""
        return self._target

    @property
    def title(self) -> str:
        """``web vda``."""
        return f"{self._target.domain} {self._target.disk}"

    @property
    def where(self) -> str:
        """The domain's disk."""
        return f"{self._target.domain} {self._target.disk}"

    def reload(self) -> None:
        """Read the disk's chain off the GUI thread."""
        target = self._target
        self._events.status(f"Reading {target.domain} {target.disk} from {target.uri}…")
        run_in_background(
            lambda _report: read_disk_and_snapshots(target),  # pool thread
            on_result=self._on_read,
            on_error=self._on_failed,
        )

    def _on_read(self, result: tuple[ImageGraph, Any, bool, Any]) -> None:
        graph, self.info, self.running, self.snapshots = result
        self._on_read_done(self)
        self._events.shown(self, graph, active_layer(graph), "extents")
        uri = self._target.uri
        where = "this machine" if is_local(uri) else f"{uri} (chain from the domain XML only)"
        state = "running" if self.running else "shut off"
        self._events.status(f"{self._target.domain} {self.info.target} ({state}) on {where}")

    def _on_failed(self, error: BaseException) -> None:
        summary = error.summary if isinstance(error, BackchainError) else str(error)
        details = error.details if isinstance(error, BackchainError) else ""
        self._events.failed(self, summary, details)

    def adjust(self, request: CommitRequest) -> CommitRequest:
        """On a running domain, choosing its active layer as top turns ACTIVE on."""
        if not self.running:
            return request
        top = request.top or request.image
        return replace(request, engine=EngineKind.LIBVIRT, active=top == request.image)

    def prepare(self, graph: ImageGraph, request: CommitRequest) -> CommitPlan:
        """plan_for_graph: shut-off wrapping, the re-point step, remote notes, the guard."""
        repoint = not self.running and self._repoint()
        # The window has no ACTIVE control: the engine decides, so its plan also says why.
        planned = replace(request, active=False)
        try:
            plan = plan_for_graph(self._target, graph, self.info, self.running, planned,
                                  repoint=repoint, snapshots=self.snapshots,
                                  drop_snapshot_metadata=self._drop_metadata())  # fmt: skip
        except SnapshotGuardError as err:
            self._report_guard(request, err.names)
            raise PlanError(window_words(err)) from err
        except PlanError:
            self._report_guard(request, ())
            raise
        self._report_guard(request, dropped_snapshots(plan))
        return plan

    def _report_guard(self, request: CommitRequest, names: tuple[str, ...]) -> None:
        if self._on_guard is not None:
            self._on_guard(request, names)

    def set_speed(self, bytes_per_second: int) -> None:
        """virDomainBlockJobSetSpeed, off the GUI thread."""
        self._set_speed(self._target, bytes_per_second)
