"""Reads an image graph off the GUI thread, in stages: headers, then siblings, then allocation."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from backchain.core.errors import BackchainError
from backchain.core.graph import ImageGraph
from backchain.engines.files import scan
from backchain.ui.background import run_in_background

STAGES = ("headers", "scanned", "extents")


def load_in_stages(
    image: str, report: Callable[[Any], None]
) -> ImageGraph:  # runs in a pool thread
    """read_chain, then scan_directories + probe_facts, then load_extents, reporting each."""
    graph = scan.read_chain(image)
    report(("headers", graph))
    graph = scan.probe_facts(scan.scan_directories(graph, scan.default_scan_dirs(graph)))
    report(("scanned", graph))
    return scan.load_extents(graph)


class ChainLoader(QObject):
    """Loads one image at a time; results of an older request are dropped when a newer one runs."""

    stage_loaded = Signal(object, str, str)
    """graph, image path, stage name (``headers``, ``scanned``, ``extents``)."""
    failed = Signal(str, str, str)
    """image path, summary naming the file and cause, details."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self.busy = False

    def load(self, image: str) -> None:
        """Start reading ``image``; signals follow on the GUI thread."""
        self._generation += 1
        generation = self._generation
        self.busy = True

        def current() -> bool:
            return generation == self._generation

        def on_stage(item: object) -> None:
            if current():
                stage, graph = item  # type: ignore[misc]
                self.stage_loaded.emit(graph, image, stage)

        def on_result(graph: object) -> None:
            if current():
                self.busy = False
                self.stage_loaded.emit(graph, image, "extents")

        def on_error(error: BaseException) -> None:
            if not current():
                return
            self.busy = False
            if isinstance(error, BackchainError):
                self.failed.emit(image, error.summary, error.details)
            elif isinstance(error, OSError):
                self.failed.emit(image, f"{image}: {error.strerror or error}", "")
            else:
                details = "".join(traceback.format_exception(error))
                self.failed.emit(image, f"{image}: cannot be read ({error})", details)

        run_in_background(
            lambda report: load_in_stages(image, report), on_stage, on_result, on_error
        )
