"""Reads an image graph off the GUI thread, in stages: headers, then siblings, then allocation."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject

from backchain.core.errors import BackchainError
from backchain.core.graph import ImageGraph
from backchain.engines.files import scan
from backchain.ui.background import run_in_background

STAGES = ("headers", "scanned", "extents")


def load_in_stages(
    image: str, report: Callable[[Any], None], extra_dirs: Sequence[str] = ()
) -> ImageGraph:  # runs in a pool thread
    """read_chain, then scan_directories + probe_facts, then load_extents, reporting each."""
    graph = scan.read_chain(image)
    report(("headers", graph))
    directories = list(dict.fromkeys([*scan.default_scan_dirs(graph), *extra_dirs]))
    graph = scan.probe_facts(scan.scan_directories(graph, directories))
    report(("scanned", graph))
    return scan.load_extents(graph)


def describe_error(image: str, error: BaseException) -> tuple[str, str]:
    """The summary (naming the file and the cause) and the details of a failed read."""
    if isinstance(error, BackchainError):
        return error.summary, error.details
    if isinstance(error, OSError):
        return f"{image}: {error.strerror or error}", ""
    return f"{image}: cannot be read ({error})", "".join(traceback.format_exception(error))


class ChainLoader(QObject):
    """Loads one image at a time; results of an older request are dropped when a newer one runs."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self.busy = False

    def cancel(self) -> None:
        """Drop whatever the running read still reports (another source took its place)."""
        self._generation += 1
        self.busy = False

    def load(
        self,
        image: str,
        extra_dirs: Sequence[str],
        on_stage: Callable[[ImageGraph, str], None],
        on_failed: Callable[[str, str], None],
    ) -> None:
        """Start reading ``image``; ``on_stage(graph, stage)`` or ``on_failed`` follow later."""
        self._generation += 1
        generation = self._generation
        self.busy = True

        def current() -> bool:
            return generation == self._generation

        def staged(item: tuple[str, ImageGraph]) -> None:
            if current():
                on_stage(item[1], item[0])

        def done(graph: ImageGraph) -> None:
            if current():
                self.busy = False
                on_stage(graph, "extents")

        def failed(error: BaseException) -> None:
            if current():
                self.busy = False
                on_failed(*describe_error(image, error))

        dirs = tuple(extra_dirs)
        run_in_background(lambda report: load_in_stages(image, report, dirs), staged, done, failed)
