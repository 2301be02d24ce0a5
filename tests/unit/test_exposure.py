"""The incremental exposure walk against a per-image reference over plain sets of bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backchain.core import exposure
from backchain.core.exposure import SMALL_BITMAP_UNITS, RangeAlgebra, _Walk, expose
from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest
from backchain.engines.registry import make_plan as plan


def as_bytes(extents: ExtentSet | None) -> set[int] | None:
    if extents is None:
        return None
    return {offset for start, end in extents for offset in range(start, end)}


@st.composite
def graphs(draw: st.DrawFn) -> ImageGraph:
    """A random forest of up to 9 layers; own extents in units of 1, 4 or 16 bytes, or None."""
    count = draw(st.integers(2, 9))
    layers = []
    for index in range(count):
        backing = None if index == 0 else draw(st.sampled_from([None, *range(index)]))
        unit = draw(st.sampled_from([1, 4, 16]))
        spans = draw(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 6)), max_size=5))
        known = draw(st.integers(0, 9)) > 0
        extents = ExtentSet.from_ranges((s * unit, n * unit) for s, n in spans)
        # Some of the layer's own ranges are zero clusters (they read as zeros).
        zero_spans = [span for span in spans if draw(st.integers(0, 3)) == 0]
        zeros = ExtentSet.from_ranges((s * unit, n * unit) for s, n in zero_spans)
        zeros = zeros.difference(ExtentSet.from_ranges((s * unit, n * unit) for s, n in spans
                                                       if (s, n) not in zero_spans))  # fmt: skip
        layers.append(
            Layer(
                path=f"/img/l{index}",
                format="qcow2",
                virtual_size=draw(st.sampled_from([40, 100, 333, 1000])),
                backing_name=None if backing is None else f"l{backing}",
                backing_format=None if backing is None else "qcow2",
                backing_path=None if backing is None else f"/img/l{backing}",
                extents=extents if known else None,
                zeros=zeros if known else None,
            )
        )
    return ImageGraph(layers)


class Reads:
    """QEMU's reads, offset by offset, before and after a commit: each byte is named by the
    layer and offset it comes from, or 0 for zeros (unallocated, or past a backing's end)."""

    def __init__(self, graph: ImageGraph, chain: list[Layer], top: int, base: int) -> None:
        self.graph, self.chain, self.top, self.base = graph, chain, top, base
        self.owns = {layer.path: as_bytes(layer.extents) or set() for layer in graph}
        self.zeros = {layer.path: as_bytes(layer.zeros) or set() for layer in graph}
        self.rebased = set(graph.overlays(chain[top].path))
        self.top_size = chain[top].virtual_size
        self.base_path = chain[base].path
        self.base_size = max(chain[base].virtual_size, self.top_size)

    def read(self, path: str, x: int) -> object:
        """A layer's own byte: zeros for a zero cluster, else named by where it comes from."""
        return 0 if x in self.zeros[path] else (path, x)

    def before(self, path: str, x: int) -> object:
        while True:
            if x in self.owns[path]:
                return self.read(path, x)
            backing = self.graph.backing_of(path)
            if backing is None or x >= self.graph.layer(backing).virtual_size:
                return 0
            path = backing

    def copied(self, x: int) -> bool:
        """bdrv_is_allocated_above(top, base): allocated in a merged layer, or past its end."""
        if x >= self.top_size:
            return False
        for index, layer in enumerate(self.chain[self.top : self.base]):
            if index and x >= layer.virtual_size:
                return True
            if x in self.owns[layer.path]:
                return True
        return False

    def new_base(self, x: int) -> object:
        if self.copied(x):
            return self.before(self.chain[self.top].path, x)
        if x < self.chain[self.base].virtual_size:
            return self.before(self.base_path, x)
        return 0

    def after(self, path: str, x: int) -> object:
        while True:
            if path == self.base_path:
                return self.new_base(x)
            if x in self.owns[path]:
                return self.read(path, x)
            backing = self.base_path if path in self.rebased else self.graph.backing_of(path)
            size = self.base_size if backing == self.base_path else None
            if backing is None:
                return 0
            if x >= (size if size is not None else self.graph.layer(backing).virtual_size):
                return 0
            path = backing

    def changed(self, path: str) -> int:
        size = self.graph.layer(path).virtual_size
        return sum(self.before(path, x) != self.after(path, x) for x in range(size))


def reference(graph: ImageGraph, chain: list[Layer], top: int, base: int) -> dict[str, object]:
    """invalid, at_risk, view changes, bytes_to_copy and pull bytes, each from scratch."""
    merged = chain[top:base]
    reads = Reads(graph, chain, top, base)
    owns = reads.owns
    invalid = [(layer.path, reads.changed(layer.path)) for layer in merged[1:]]
    spared = graph.dependants(chain[top].path) | {chain[top].path}
    at_risk = [
        (path, reads.changed(path))
        for path in sorted(graph.dependants(chain[base].path) - spared - {x.path for x in merged})
    ]
    above = [(path, reads.changed(path)) for path in sorted(spared)]
    pulls = []
    for index in range(top, base):
        below = [owns[x.path] for x in chain[index + 1 : base + 1]]
        beneath = set().union(*below) - owns[chain[index].path]
        pulls.append(len({o for o in beneath if o < chain[index].virtual_size}))
    return {
        "invalid": invalid,
        "at_risk": at_risk,
        "above": [(p, n) for p, n in above if n],
        "copy": sum(reads.copied(x) for x in range(reads.top_size)),
        "pulls": pulls,
    }


@st.composite
def commits(draw: st.DrawFn) -> tuple[ImageGraph, list[Layer], int, int]:
    graph = draw(graphs())
    deep = [p for p in graph.paths if len(graph.chain(p)) >= 2]
    if not deep:
        graph = graph.with_layers(
            [
                Layer(
                    path="/img/extra",
                    format="qcow2",
                    virtual_size=100,
                    backing_name="l0",
                    backing_format="qcow2",
                    backing_path="/img/l0",
                )
            ]
        )
        deep = ["/img/extra"]
    chain = graph.chain(draw(st.sampled_from(sorted(deep))))
    top = draw(st.integers(0, len(chain) - 2))
    base = draw(st.integers(top + 1, len(chain) - 1))
    return graph, chain, top, base


@settings(max_examples=300, deadline=None)
@given(commits())
def test_plan_matches_the_reference_image_by_image(
    case: tuple[ImageGraph, list[Layer], int, int],
) -> None:
    graph, chain, top, base = case
    # Every allocation known here; unknown ones are counted whole (test_unknown_...).
    graph = graph.with_extents({x.path: ExtentSet.empty() for x in graph if x.extents is None})
    chain = [graph.layer(layer.path) for layer in chain]
    request = CommitRequest(image=chain[0].path, top=chain[top].path, base=chain[base].path)
    result = plan(graph, request)
    expected = reference(graph, chain, top, base)
    assert [(a.image, a.bytes) for a in result.invalid] == expected["invalid"]
    assert [(a.image, a.bytes) for a in result.at_risk] == expected["at_risk"]
    assert [(a.image, a.bytes) for a in result.view_changes] == expected["above"]
    assert all(a.exact for a in (*result.invalid, *result.at_risk, *result.view_changes))
    assert result.bytes_to_copy == expected["copy"]
    assert [a.pull_bytes for a in result.advice] == expected["pulls"]
    grows = chain[top].virtual_size if chain[top].virtual_size > chain[base].virtual_size else None
    assert result.base_grows_to == grows


@settings(max_examples=200, deadline=None)
@given(commits())
def test_bitmaps_and_sorted_ranges_give_the_same_exposure(
    case: tuple[ImageGraph, list[Layer], int, int],
) -> None:
    graph, chain, top, base = case
    assert SMALL_BITMAP_UNITS > 1000  # so that expose() does take the bitmap path here
    saved = exposure.FEW_RANGES
    try:
        exposure.FEW_RANGES = -1  # few ranges would otherwise take the sorted-range path
        with_bitmaps = expose(graph, chain, top, base)
    finally:
        exposure.FEW_RANGES = saved
    assert with_bitmaps == _Walk(RangeAlgebra()).run(graph, chain, top, base)


def test_byte_granular_extents_far_into_a_large_disk_give_exact_bytes() -> None:
    """Boundaries at odd offsets near 1 TiB: far too many 1-byte units for a bitmap."""
    tib = 1 << 40

    def layer(name: str, backing: str | None, *spans: tuple[int, int]) -> Layer:
        return Layer(
            path=f"/img/{name}",
            format="qcow2",
            virtual_size=2 * tib,
            backing_name=backing,
            backing_format=None if backing is None else "qcow2",
            backing_path=None if backing is None else f"/img/{backing}",
            extents=ExtentSet.from_ranges((tib + s, n) for s, n in spans),
        )

    graph = ImageGraph(
        [
            layer("base", None, (0, 1000)),
            layer("mid", "base", (3, 10), (501, 7)),
            layer("top", "mid", (5, 100)),
            layer("side", "base", (1, 50)),
            layer("twig", "mid", (50, 1)),
        ]
    )
    result = plan(graph, CommitRequest(image="/img/top"))
    # changed = [3,105) u [501,508) = 109 bytes; side hides [3,51) -> 61 exposed; mid hides
    # [3,13) and [501,508) -> [13,105) = 92, of which twig hides one more byte.
    assert result.bytes_to_copy == 109
    assert [(a.image, a.bytes) for a in result.at_risk] == [("/img/side", 61), ("/img/twig", 91)]
    assert [(a.image, a.bytes) for a in result.invalid] == [("/img/mid", 92)]
    chain = graph.chain("/img/top")
    assert expose(graph, chain, 0, 2) == _Walk(RangeAlgebra()).run(graph, chain, 0, 2)


def test_an_image_whose_allocation_is_unknown_is_counted_whole_and_not_exact() -> None:
    def layer(name: str, backing: str | None, extents: ExtentSet | None) -> Layer:
        return Layer(path=f"/img/{name}", format="qcow2", virtual_size=1000,
                     backing_name=backing, backing_format=None if backing is None else "qcow2",
                     backing_path=None if backing is None else f"/img/{backing}",
                     extents=extents)  # fmt: skip

    graph = ImageGraph([
        layer("base", None, ExtentSet.empty()),
        layer("top", "base", ExtentSet.span(0, 10)),
        layer("side", "base", None),
        layer("leaf", "side", ExtentSet.empty()),
    ])  # fmt: skip
    result = plan(graph, CommitRequest(image="/img/top"))
    assert [(a.image, a.bytes, a.exact) for a in result.at_risk] == [
        ("/img/leaf", 1000, False),
        ("/img/side", 1000, False),
    ]
