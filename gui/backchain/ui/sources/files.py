"""Image files on this machine: read in stages, with extra folders scanned for siblings."""

from __future__ import annotations

import os
from collections.abc import Sequence

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind
from backchain.engines.base import ImageTarget
from backchain.engines.registry import make_plan
from backchain.ui.loader import ChainLoader
from backchain.ui.sources import SourceEvents


def short_dir(path: str) -> str:
    """The folder of ``path`` with the home directory written as ``~``."""
    folder = os.path.dirname(path)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (folder == home or folder.startswith(home + os.sep)):
        return "~" + folder[len(home) :]
    return folder


class FileSource:
    """One image and its chain, siblings found in its own folders and in ``scan_dirs``."""

    engine = EngineKind.QEMU_IMG
    live_speed = False

    def __init__(
        self, path: str, events: SourceEvents, loader: ChainLoader, scan_dirs: Sequence[str] = ()
    ) -> None:
        self.path = os.path.abspath(path)
        self.scan_dirs = tuple(os.path.abspath(d) for d in scan_dirs)
        self._events = events
        self._loader = loader

    @property
    def target(self) -> ImageTarget:
        """The files, with the folders scanned for siblings, as the runner and journal keep them."""
        return ImageTarget(self.path, self.scan_dirs)

    @property
    def title(self) -> str:
        """``active.qcow2 (~/vms/web)``: two images of one name stay apart."""
        return f"{os.path.basename(self.path)} ({short_dir(self.path)})"

    @property
    def where(self) -> str:
        """The image's path."""
        return self.path

    def reload(self) -> None:
        """Read headers, then siblings, then allocation; each stage is shown as it comes."""
        self._events.status(f"Reading {os.path.basename(self.path)}…")
        self._loader.load(
            self.path,
            self.scan_dirs,
            lambda graph, stage: self._events.shown(self, graph, self.path, stage),
            lambda summary, details: self._events.failed(self, summary, details),
        )

    def adjust(self, request: CommitRequest) -> CommitRequest:
        """Offline requests go to qemu-img as they are."""
        return request

    def prepare(self, graph: ImageGraph, request: CommitRequest) -> CommitPlan:
        """core.plan: qemu-img's rules are the planner's own."""
        return make_plan(graph, request)

    def set_speed(self, bytes_per_second: int) -> None:
        """qemu-img's -r is fixed once it runs."""
        del bytes_per_second
