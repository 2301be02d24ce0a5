"""The planner against SEMANTICS.md, on in-memory graphs with exact extents (no processes)."""

from __future__ import annotations

import pytest

from backchain.core.errors import PlanError
from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest, OnReady, Role
from backchain.core.valueclass import replace
from backchain.engines.registry import make_plan as plan

MiB = 1 << 20
SIZE = 100 * MiB


def layer(
    name: str, backing: str | None, *spans: tuple[int, int], relative: bool = True, **kw: object
) -> Layer:
    """A layer at /img/NAME whose own data covers the given (start, end) MiB spans."""
    extents = ExtentSet.from_ranges((s * MiB, (e - s) * MiB) for s, e in spans)
    backing_name = None if backing is None else (backing if relative else f"/img/{backing}")
    return Layer(
        path=f"/img/{name}",
        format="qcow2",
        virtual_size=SIZE,
        backing_name=backing_name,
        backing_format=None if backing is None else "qcow2",
        backing_path=None if backing is None else f"/img/{backing}",
        extents=extents,
        **kw,  # type: ignore[arg-type]
    )


def seed_graph() -> ImageGraph:
    """base <- snap1 <- snap2 <- active, the chain of SEMANTICS.md's equivalences."""
    return ImageGraph(
        [
            layer("base", None, (0, 100)),
            layer("snap1", "base", (10, 20)),
            layer("snap2", "snap1", (15, 30)),
            layer("active", "snap2", (25, 35)),
        ]
    )


def tree_graph() -> ImageGraph:
    """The seed chain plus a sibling on base and a branch on snap1."""
    return seed_graph().with_layers(
        [
            layer("other", "base", (12, 18)),
            layer("branch", "snap1", (26, 28)),
        ]
    )


def p(graph: ImageGraph, **kw: object):  # type: ignore[no-untyped-def]
    return plan(graph, CommitRequest(image="/img/active", **kw))  # type: ignore[arg-type]


def key(result) -> dict:  # type: ignore[no-untyped-def]
    document = result.to_json()
    document.pop("notes")
    return document


def test_defaults_top_active_and_base_bottom_are_one_plan() -> None:
    g = seed_graph()
    plans = [
        p(g),
        p(g, top="/img/active"),
        p(g, base="/img/base"),
        p(g, top="/img/active", base="/img/base"),
    ]
    assert all(key(x) == key(plans[0]) for x in plans)
    assert plans[0].top == "/img/active" and plans[0].base == "/img/base"
    assert plans[0].merged == ("/img/active", "/img/snap2", "/img/snap1")


def test_base_snap2_and_shallow_are_one_plan() -> None:
    g = seed_graph()
    assert key(p(g, base="/img/snap2")) == key(p(g, shallow=True))
    assert p(g, shallow=True).base == "/img/snap2"


def test_shallow_top_snap2_commits_into_snap1_and_repoints_active() -> None:
    result = p(seed_graph(), top="/img/snap2", shallow=True)
    assert (result.top, result.base, result.merged) == ("/img/snap2", "/img/snap1", ("/img/snap2",))
    assert [(r.image, r.backing, r.backing_name) for r in result.rebased] == [
        ("/img/active", "/img/snap1", "snap1")
    ]
    assert result.stale == ("/img/snap2",)


def test_shallow_with_given_adjacent_base_is_allowed() -> None:
    assert p(seed_graph(), top="/img/snap2", base="/img/snap1", shallow=True).base == "/img/snap1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top": "/img/nope"}, "could not find image '/img/nope' in chain for '/img/active'"),
        ({"top": "/img/other"}, "could not find image '/img/other' in chain for '/img/active'"),
        (
            {"top": "/img/snap2", "base": "/img/snap2"},
            "could not find image '/img/snap2' beneath '/img/snap2' in chain for '/img/active'",
        ),
        (
            {"top": "/img/snap1", "base": "/img/snap2"},
            "could not find image '/img/snap2' beneath '/img/snap1' in chain for '/img/active'",
        ),
        (
            {"base": "/img/other"},
            "could not find image '/img/other' beneath '/img/active' in chain for '/img/active'",
        ),
        ({"top": "/img/base"}, "could not find base image in chain for '/img/active'"),
        (
            {"top": "/img/base", "shallow": True},
            "top '/img/base' in chain for '/img/active' has no backing file",
        ),
        (
            {"top": "/img/base", "base": "/img/base"},
            "could not find image '/img/base' beneath '/img/base' in chain for '/img/active'",
        ),
        (
            {"top": "/img/base", "base": "/img/snap1", "shallow": True},
            "could not find image '/img/snap1' beneath '/img/base' in chain for '/img/active'",
        ),
        (
            {"top": "/img/active", "base": "/img/snap1", "shallow": True},
            "base '/img/snap1' is not immediately below '/img/active' in chain for '/img/active'",
        ),
    ],
)
def test_wrong_top_or_base_is_refused_like_libvirt(kwargs: dict, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        p(tree_graph(), **kwargs)
    assert str(caught.value) == message


def test_active_flag_is_checked_before_shallow_adjacency_as_libvirt_does() -> None:
    with pytest.raises(PlanError, match="requires active flag"):
        p(seed_graph(), engine="qmp", base="/img/snap1", shallow=True)


def test_bandwidth_above_llong_max_is_refused_with_libvirts_words() -> None:
    assert p(seed_graph(), rate=(1 << 63) - 1).request.rate == (1 << 63) - 1
    with pytest.raises(PlanError, match=r"^bandwidth must be less than 9223372036854775807$"):
        p(seed_graph(), rate=1 << 63)


def test_online_active_layer_requires_the_active_flag() -> None:
    with pytest.raises(
        PlanError, match="commit of '/img/active' active layer requires active flag"
    ):
        p(seed_graph(), engine="qmp")
    with pytest.raises(PlanError, match="active commit requested but '/img/snap2' is not active"):
        p(seed_graph(), engine="qmp", top="/img/snap2", active=True)
    assert p(seed_graph(), engine="qmp", active=True).active_commit


def test_keep_relative_with_an_absolute_link_is_refused() -> None:
    g = seed_graph().with_layers([layer("snap2", "snap1", (15, 30), relative=False)])
    with pytest.raises(PlanError, match="can't keep relative backing relationship"):
        p(g, top="/img/snap2", keep_relative=True)
    assert p(seed_graph(), top="/img/snap2", keep_relative=True).rebased[0].backing_name == "base"


def test_keep_relative_on_an_active_commit_is_accepted_as_libvirt_does() -> None:
    absolute = [layer(n, b, relative=False) for n, b in (("snap1", "base"), ("snap2", "snap1"),
                                                          ("active", "snap2"))]  # fmt: skip
    g = seed_graph().with_layers(absolute)
    assert p(g, engine="qmp", active=True, keep_relative=True).active_commit
    assert p(g, keep_relative=True).rebased == ()
    with pytest.raises(PlanError, match="can't keep relative backing relationship"):
        p(g, top="/img/snap2", keep_relative=True)


def test_absolute_backing_names_stay_absolute_unless_keep_relative() -> None:
    g = seed_graph().with_layers([layer("active", "snap2", (25, 35), relative=False)])
    assert p(g, top="/img/snap2").rebased[0].backing_name == "/img/base"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"in_use": True}, "/img/base is in use by a running QEMU"),
        ({"writable": False}, "'/img/base' is not writable"),
        ({"free_bytes": 5 * MiB}, "not enough free space for base '/img/base' to grow"),
    ],
)
def test_offline_refusals_on_base(change: dict, message: str) -> None:
    g = seed_graph()
    g = g.with_layers([replace(g.layer("/img/base"), **change)])
    with pytest.raises(PlanError, match=message):
        p(g)


def test_a_locked_overlay_refuses_offline_but_not_online() -> None:
    g = seed_graph()
    g = g.with_layers([replace(g.layer("/img/active"), in_use=True)])
    with pytest.raises(PlanError, match="/img/active is in use"):
        p(g, top="/img/snap2")
    assert p(g, top="/img/snap2", engine="qmp").top == "/img/snap2"


def test_missing_backing_and_unrecorded_format_are_refused() -> None:
    lost = layer("lost", None, (0, 1))
    lost = replace(lost, backing_name="gone.qcow2", backing_format="qcow2")
    with pytest.raises(PlanError, match=r"backing file 'gone\.qcow2' of '/img/lost' is missing"):
        plan(ImageGraph([lost]), CommitRequest(image="/img/lost"))
    g = seed_graph()
    g = g.with_layers([replace(g.layer("/img/snap1"), backing_format=None)])
    with pytest.raises(PlanError, match="does not record the format"):
        p(g)


def test_invalid_layers_and_siblings_at_risk_have_exact_bytes() -> None:
    result = p(tree_graph())
    # changed = [10,35); snap2 hides [15,30) and snap1 below it hides [10,20) -> [30,35) exposed.
    assert [(a.image, a.bytes) for a in result.invalid] == [
        ("/img/snap2", 5 * MiB),
        ("/img/snap1", 15 * MiB),
    ]
    assert result.bytes_to_copy == 25 * MiB
    # other hides [12,18): 19 MiB exposed. branch+snap1 hide [10,20)+[26,28): 13 MiB exposed.
    assert [(a.image, a.bytes) for a in result.at_risk] == [
        ("/img/branch", 13 * MiB),
        ("/img/other", 19 * MiB),
    ]
    # top=snap2: changed = [10,30); branch exposes [20,26)+[28,30), other all but [12,18).
    mid = p(tree_graph(), top="/img/snap2")
    assert [(a.image, a.bytes) for a in mid.at_risk] == [
        ("/img/branch", 8 * MiB),
        ("/img/other", 14 * MiB),
    ]


def test_a_sibling_that_hides_every_changed_byte_is_at_risk_with_zero_bytes() -> None:
    g = seed_graph().with_layers([layer("cover", "base", (0, 100))])
    assert [(a.image, a.bytes) for a in p(g).at_risk] == [("/img/cover", 0)]


def test_unknown_extents_count_the_whole_image_and_are_not_exact() -> None:
    g = tree_graph()
    g = g.with_layers([replace(g.layer("/img/other"), extents=None)])
    size = g.layer("/img/other").virtual_size
    assert [(a.image, a.bytes, a.exact) for a in p(g).at_risk] == [
        ("/img/branch", 13 * MiB, True),
        ("/img/other", size, False),
    ]
    assert p(g).bytes_to_copy == 25 * MiB


def test_delete_is_refused_while_a_branch_depends_on_a_merged_layer() -> None:
    with pytest.raises(PlanError, match="cannot delete '/img/snap1': '/img/branch' still depends"):
        p(tree_graph(), delete=True)
    result = p(tree_graph(), top="/img/snap2", base="/img/snap1", delete=True)
    assert result.deleted == ("/img/snap2",)
    assert [s.kind for s in result.steps] == ["commit", "rebase", "verify", "delete"]


def test_delete_without_verify_says_so() -> None:
    result = p(seed_graph(), delete=True, verify=False)
    assert [s.kind for s in result.steps] == ["commit", "delete", "delete", "delete"]
    assert any("--no-verify" in note for note in result.notes)


def test_online_delete_with_keep_overlay_is_refused() -> None:
    with pytest.raises(PlanError, match="stays the active layer"):
        p(seed_graph(), engine="qmp", active=True, delete=True, on_ready=OnReady.KEEP_OVERLAY)


def test_offline_steps_are_exact_argv_lists() -> None:
    result = p(seed_graph(), top="/img/snap2", rate=1000)
    assert [s.to_json() for s in result.steps] == [
        ["qemu-img", "commit", "-f", "qcow2", "-p", "-b", "/img/base", "-r", "1000", "/img/snap2"],
        ["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "base", "-F", "qcow2", "/img/active"],
    ]
    assert result.steps[1].cwd == "/img"


def test_roles_colour_every_touched_image() -> None:
    roles = p(tree_graph(), top="/img/snap2", base="/img/base").roles()
    assert roles == {
        "/img/base": Role.BASE,
        "/img/snap1": Role.INVALID,
        "/img/snap2": Role.STALE,
        "/img/active": Role.REBASED,
        "/img/other": Role.AT_RISK,
        "/img/branch": Role.AT_RISK,
    }


def test_pull_or_commit_advice_follows_the_bytes() -> None:
    g = ImageGraph(
        [layer("base", None, (0, 100)), layer("big", "base", (0, 90)), layer("top", "big", (0, 1))]
    )
    result = plan(g, CommitRequest(image="/img/top", top="/img/big"))
    advice = result.advice[0]
    assert advice.ratio == pytest.approx(0.9)
    assert (advice.commit_bytes, advice.pull_bytes, advice.direction) == (
        90 * MiB,
        10 * MiB,
        "pull",
    )


def test_a_backing_loop_is_an_image_error() -> None:
    from backchain.core.errors import ImageError

    with pytest.raises(ImageError, match="loops back"):
        ImageGraph([layer("a", "b", (0, 1)), layer("b", "a", (0, 1))])


def test_a_chain_in_a_block_job_is_refused_before_top_and_base_are_resolved() -> None:
    graph = seed_graph()
    graph = graph.with_layers([replace(graph.layer("/img/snap1"), block_job="other")])
    with pytest.raises(PlanError, match=r"^disk '/img/active' already in active block job$"):
        p(graph, top="/img/nope")
