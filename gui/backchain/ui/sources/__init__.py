"""Where the window's graph comes from: image files, a QMP socket or a libvirt disk.

The window holds one Source at a time. A source reads its graph off the GUI thread and reports
through the callbacks it was given, plans with its engine's rules, names the runner's target,
and says which controls stay live while its job runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PySide6.QtGui import QAction

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind
from backchain.core.valueclass import valueclass


class Source(Protocol):
    """One place the graph is read from and the plans run against."""

    @property
    def engine(self) -> EngineKind:
        """The engine the requests name."""

    @property
    def target(self) -> object | None:
        """What the runner gets as its ``connection``; built here and nowhere else."""

    @property
    def title(self) -> str:
        """The window title's subject (a file and its folder, a device and its socket)."""

    @property
    def where(self) -> str:
        """What a failure names: a path, an address, a domain's disk."""

    @property
    def live_speed(self) -> bool:
        """Whether the bandwidth may change while this source's job runs."""

    def reload(self) -> None:
        """Read the graph again, off the GUI thread; the result comes through the callbacks."""

    def adjust(self, request: CommitRequest) -> CommitRequest:
        """The request as this source's engine needs it (ACTIVE for the running VM's layer)."""

    def prepare(self, graph: ImageGraph, request: CommitRequest) -> CommitPlan:
        """The plan for ``request``, with this engine's rules; raise PlanError to refuse."""

    def set_speed(self, bytes_per_second: int) -> None:
        """Change the running job's bandwidth (only when ``live_speed``)."""


@valueclass(frozen=True)
class SourceEvents:
    """How a source reports to the window; every callback runs on the GUI thread."""

    shown: Callable[[Source, ImageGraph, str, str], None]
    """source, graph, focus (the active layer), stage (headers, scanned, extents)."""
    failed: Callable[[Source, str, str], None]
    """source, summary naming the file or address and the cause, details."""
    status: Callable[[str], None]
    """A line for the status bar."""
    log: Callable[[str], None]
    """A line for the job log."""


class ConnectHost(Protocol):
    """What the Connect panels need from the window: to show a source, and the menu."""

    events: SourceEvents

    def open_source(self, source: Source) -> None:
        """Make ``source`` the window's one source and read it."""

    def current_source(self) -> Source | None:
        """The source on screen."""

    def add_connect_action(self, action: QAction) -> None:
        """Put an entry in the Connect menu."""

    def reload(self) -> None:
        """Read the current source again."""

    def notify_error(self, summary: str, details: str) -> None:
        """Show an error that does not replace the graph (a host that cannot be listed)."""
