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
        layers.append(
            Layer(
                path=f"/img/l{index}",
                format="qcow2",
                virtual_size=draw(st.sampled_from([40, 100, 333, 1000])),
                backing_name=None if backing is None else f"l{backing}",
                backing_format=None if backing is None else "qcow2",
                backing_path=None if backing is None else f"/img/l{backing}",
                extents=extents if known else None,
            )
        )
    return ImageGraph(layers)


def exposed(changed: set[int] | None, hiding: list[set[int] | None], limit: int) -> int | None:
    """The planner's old definition, image by image."""
    if changed is None or any(h is None for h in hiding):
        return None
    hidden = set().union(*(h for h in hiding if h is not None))
    return len({o for o in changed - hidden if o < limit})


def reference(graph: ImageGraph, chain: list[Layer], top: int, base: int) -> dict[str, object]:
    """invalid, at_risk, bytes_to_copy and pull bytes, each computed from scratch."""
    merged = chain[top:base]
    owns = {layer.path: as_bytes(layer.extents) for layer in graph}
    changed: set[int] | None = None
    if all(owns[layer.path] is not None for layer in merged):
        changed = set().union(*(owns[layer.path] or set() for layer in merged))
    invalid = [
        (layer.path, exposed(changed, [owns[x.path] for x in merged[i:]], layer.virtual_size))
        for i, layer in enumerate(merged)
        if i > 0
    ]
    spared = graph.dependants(chain[top].path) | {chain[top].path}
    at_risk = []
    for path in sorted(graph.dependants(chain[base].path) - spared - {x.path for x in merged}):
        above = [x.path for x in graph.chain(path)]
        above = above[: above.index(chain[base].path)]
        limit = graph.layer(path).virtual_size
        at_risk.append((path, exposed(changed, [owns[x] for x in above], limit)))
    pulls = []
    for index in range(top, base):
        below = [owns[x.path] for x in chain[index + 1 : base + 1]]
        mine = owns[chain[index].path]
        if mine is None or any(b is None for b in below):
            pulls.append(None)
            continue
        beneath = set().union(*(b for b in below if b is not None)) - mine
        pulls.append(len({o for o in beneath if o < chain[index].virtual_size}))
    return {
        "invalid": invalid,
        "at_risk": at_risk,
        "copy": None if changed is None else len(changed),
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
    request = CommitRequest(image=chain[0].path, top=chain[top].path, base=chain[base].path)
    result = plan(graph, request)
    expected = reference(graph, chain, top, base)
    assert [(a.image, a.bytes) for a in result.invalid] == expected["invalid"]
    assert [(a.image, a.bytes) for a in result.at_risk] == expected["at_risk"]
    assert result.bytes_to_copy == expected["copy"]
    assert [a.pull_bytes for a in result.advice] == expected["pulls"]


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
