"""Layered layout of an image graph: bottoms at the bottom, active layers on top, branches aside."""

from __future__ import annotations

from backchain.core.graph import ImageGraph
from backchain.core.valueclass import valueclass


@valueclass(frozen=True)
class Slot:
    """Where a layer sits: ``column`` from the left, ``row`` counted up from the bottom."""

    column: int
    row: int


def layout(graph: ImageGraph, focus: str | None = None) -> dict[str, Slot]:
    """A slot for every layer; the chain of ``focus`` is a straight column at the left.

    Each bottom image roots a tree whose children are its overlays. The child that leads to
    ``focus`` (or, failing that, to the tallest sub-tree) stays in its parent's column so that a
    chain reads as one vertical line; every other child starts a new column to the right.
    """
    # The graph's own overlay lists answer everything here: the window's first paint waits
    # for this layout, and must not wait for networkx's import as well.
    focus_chain = (
        {layer.path for layer in graph.chain(focus)}
        if focus is not None and focus in graph
        else set()
    )
    height = _heights(graph)

    def order(path: str) -> list[str]:
        kids = graph.overlays(path)
        return sorted(kids, key=lambda k: (k not in focus_chain, -height[k], k))

    slots: dict[str, Slot] = {}
    next_column = 0
    roots = sorted(graph.bottoms(), key=lambda r: (r not in focus_chain, -height[r], r))
    for root in roots:
        # Iterative depth-first walk: deep chains (hundreds of layers) must not hit the
        # recursion limit.
        # A branch gets its column when it is reached, not when it is seen, so branches high
        # up sit nearest their chain and their edges do not cross lower branches.
        stack: list[tuple[str, int | None, int]] = [(root, next_column, 0)]
        widest = next_column
        while stack:
            path, maybe_column, row = stack.pop()
            if maybe_column is None:
                widest += 1
                maybe_column = widest
            column = maybe_column
            slots[path] = Slot(column, row)
            kids = order(path)
            pending: list[tuple[str, int | None, int]] = [
                (kid, column if index == 0 else None, row + 1) for index, kid in enumerate(kids)
            ]
            stack.extend(reversed(pending))
        next_column = widest + 1
    return slots


def _heights(graph: ImageGraph) -> dict[str, int]:
    """1 for an active layer, else 1 + the tallest overlay's height (the graph is acyclic)."""
    height: dict[str, int] = {}
    for root in graph.bottoms():
        # Post-order without recursion: a layer is measured once all its overlays are.
        stack = [(root, False)]
        while stack:
            path, measured = stack.pop()
            kids = graph.children(path)
            if measured:
                height[path] = 1 + max((height[k] for k in kids), default=0)
                continue
            stack.append((path, True))
            stack.extend((kid, False) for kid in kids)
    return height
