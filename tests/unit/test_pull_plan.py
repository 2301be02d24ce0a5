"""The pull planner against the issue's semantics, on in-memory graphs with exact extents."""

from __future__ import annotations

import json

import pytest

from backchain.core.advice import advise
from backchain.core.codec import encode, plan_from_record, plan_to_record
from backchain.core.describe import consequences, direction_line
from backchain.core.errors import PlanError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, Operation, StepKind
from backchain.core.valueclass import replace
from backchain.engines.registry import make_plan as plan
from tests.unit.test_plan import MiB, layer, seed_graph, tree_graph


def pull(graph: ImageGraph, **kw: object) -> CommitPlan:
    return plan(graph, CommitRequest(image="/img/active", operation=Operation.PULL, **kw))  # type: ignore[arg-type]


def test_default_pull_makes_the_active_layer_standalone() -> None:
    result = pull(seed_graph())
    assert result.operation is Operation.PULL
    assert (result.top, result.base) == ("/img/active", "")
    assert result.merged == ("/img/snap2", "/img/snap1", "/img/base")
    # base 0-100, snap1 10-20, snap2 15-30 under active 25-35: all but active's own 10 MiB.
    assert result.bytes_to_copy == 90 * MiB
    assert result.at_risk == () and result.invalid == () and result.stale == ()
    argv = result.steps[0].argv
    assert result.steps[0].kind is StepKind.PULL
    assert argv[1:] == (
        "rebase",
        "-f",
        "qcow2",
        "-t",
        "writethrough",
        "-p",
        "-b",
        "",
        "/img/active",
    )
    assert result.steps[0].cwd == "/img"


def test_pull_with_a_base_copies_only_the_layers_between() -> None:
    result = pull(seed_graph(), base="/img/snap1")
    assert result.merged == ("/img/snap2",)
    # snap2's 15-30 minus active's 25-35 = 15-25.
    assert result.bytes_to_copy == 10 * MiB
    assert result.rebased[0].backing_name == "snap1"
    assert result.steps[0].argv[-5:] == ("-b", "snap1", "-F", "qcow2", "/img/active")


def test_pull_into_an_intermediate_top_leaves_its_overlays_valid() -> None:
    result = pull(seed_graph(), top="/img/snap2", base="/img/base")
    assert result.top == "/img/snap2" and result.merged == ("/img/snap1",)
    assert result.bytes_to_copy == 5 * MiB  # snap1 10-20 minus snap2 15-30
    assert result.at_risk == ()


def test_siblings_keep_shared_layers_from_being_deleted() -> None:
    result = pull(tree_graph(), delete=True)
    # snap1 carries "branch", base carries "other": only snap2 is free once active leaves it.
    assert result.deletable == ("/img/snap2",)
    assert result.deleted == ("/img/snap2",)
    assert any("snap1 is kept" in note and "branch" in note for note in result.notes)
    kinds = [step.kind for step in result.steps]
    assert kinds == [StepKind.PULL, StepKind.VERIFY, StepKind.DELETE]
    assert result.steps[-1].argv == ("rm", "-f", "--", "/img/snap2")


def test_deletable_layers_are_listed_without_delete() -> None:
    result = pull(seed_graph())
    assert result.deletable == ("/img/snap2", "/img/snap1", "/img/base")
    assert result.deleted == ()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"top": "/img/nowhere"}, "could not find image '/img/nowhere' in chain for '/img/active'"),
        (
            {"base": "/img/active"},
            "could not find image '/img/active' beneath '/img/active' in chain for '/img/active'",
        ),
        (
            {"top": "/img/snap1", "base": "/img/snap2"},
            "could not find image '/img/snap2' beneath '/img/snap1' in chain for '/img/active'",
        ),
        ({"top": "/img/base"}, "top '/img/base' in chain for '/img/active' has no backing file"),
        ({"base": "/img/snap2"}, "nothing to pull: '/img/snap2' is already the backing file"),
        ({"shallow": True}, "SHALLOW is a commit option"),
        ({"rate": 1000}, "qemu-img rebase has no bandwidth limit"),
    ],
)
def test_refusals(kw: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("[", r"\[")):
        pull(seed_graph(), **kw)


def test_keep_relative_refuses_an_absolute_link() -> None:
    graph = seed_graph().with_layers([layer("active", "snap2", (25, 35), relative=False)])
    with pytest.raises(PlanError, match="can't keep relative backing relationship"):
        pull(graph, base="/img/snap1", keep_relative=True)


def test_free_space_is_checked_for_top_not_base() -> None:
    graph = seed_graph()
    tight = graph.with_layers(
        [replace(graph.layer("/img/active"), free_bytes=50 * MiB),
         replace(graph.layer("/img/base"), free_bytes=0)]
    )  # fmt: skip
    with pytest.raises(PlanError, match="not enough free space for top '/img/active'"):
        pull(tight)
    # base being full does not matter to a pull that copies only 10 MiB into top.
    assert pull(tight, base="/img/snap1").bytes_to_copy == 10 * MiB


def test_every_plan_carries_the_other_direction() -> None:
    commit = plan(tree_graph(), CommitRequest(image="/img/active"))
    assert commit.alternative is not None
    assert commit.alternative.operation is Operation.PULL
    assert commit.alternative.bytes_to_copy == 90 * MiB and commit.alternative.at_risk == ()
    pulled = pull(tree_graph())
    assert pulled.alternative is not None
    assert pulled.alternative.operation is Operation.COMMIT
    assert pulled.alternative.bytes_to_copy == commit.bytes_to_copy
    assert pulled.alternative.at_risk == commit.at_risk
    document = json.loads(json.dumps(pulled.to_json()))
    assert document["operation"] == "pull" and document["base"] is None
    assert document["alternative"]["operation"] == "commit"
    assert json.loads(json.dumps(commit.to_json()))["operation"] == "commit"


def test_the_advice_picks_fewer_bytes_and_says_both_figures() -> None:
    commit = plan(tree_graph(), CommitRequest(image="/img/active"))
    choice = advise(commit)
    assert choice is not None and choice.operation is Operation.COMMIT
    line = direction_line(commit) or ""
    assert line.startswith("Commit advised") and "25.0 MiB" in line and "90.0 MiB" in line
    assert line in consequences(commit)


def test_when_close_the_advice_picks_the_direction_with_nothing_at_risk() -> None:
    # active covers 0-52 and base 0-100: a commit copies 52 MiB, a pull 48 MiB... and a
    # sibling on base would read 52 MiB of changed data: close, so pull (always safe).
    graph = ImageGraph(
        [layer("base", None, (0, 100)), layer("active", "base", (0, 50)),
         layer("other", "base", (90, 100))]
    )  # fmt: skip
    commit = plan(graph, CommitRequest(image="/img/active"))
    choice = advise(commit)
    assert choice is not None
    assert (choice.commit_bytes, choice.pull_bytes) == (50 * MiB, 50 * MiB)
    assert choice.operation is Operation.PULL and choice.reason == "nothing-at-risk"


def test_qmp_pull_is_a_block_stream_by_node_name() -> None:
    graph = ImageGraph(replace(item, node_name=item.name) for item in seed_graph())
    request = CommitRequest(image="/img/active", operation=Operation.PULL, base="snap1",
                            rate=5 * MiB, engine=EngineKind.QMP)  # fmt: skip
    result = plan(graph, request)
    call = result.steps[0].call
    assert result.steps[0].kind is StepKind.BLOCK_STREAM and call is not None
    assert call["execute"] == "block-stream"
    assert call["arguments"] == {
        "job-id": "backchain-pull-active", "device": "active", "base-node": "snap1",
        "backing-file": "snap1", "speed": 5 * MiB, "auto-finalize": False, "auto-dismiss": False,
    }  # fmt: skip


def test_libvirt_running_pull_is_a_block_rebase_into_the_active_layer() -> None:
    graph = ImageGraph(
        replace(item, extra={"label": f"vda[{i}]", "disk": "vda"})
        for i, item in enumerate(reversed(list(seed_graph())))
    )
    request = CommitRequest(image="/img/active", operation=Operation.PULL, base="vda[2]",
                            rate=MiB, keep_relative=True, engine=EngineKind.LIBVIRT)  # fmt: skip
    result = plan(graph, request)
    assert result.steps[0].call == {
        "call": "virDomainBlockRebase", "disk": "vda", "base": "vda[2]", "bandwidth": MiB,
        "flags": ["VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES", "VIR_DOMAIN_BLOCK_REBASE_RELATIVE"],
    }  # fmt: skip
    with pytest.raises(PlanError, match="streams into the active layer"):
        plan(graph, replace(request, top="vda[1]"))


def test_a_pull_plan_survives_the_journal_codec() -> None:
    result = pull(tree_graph(), delete=True)
    assert plan_from_record(json.loads(json.dumps(plan_to_record(result)))) == result
    assert encode(result)["operation"] == "pull"


def test_a_chain_in_a_block_job_is_refused_for_a_pull_too() -> None:
    """As virsh blockpull refuses it, before top and base are even looked up."""
    graph = seed_graph()
    graph = graph.with_layers([replace(graph.layer("/img/snap1"), block_job="other")])
    with pytest.raises(PlanError, match="disk '/img/active' already in active block job"):
        pull(graph, base="/img/nowhere")


@pytest.mark.parametrize(
    ("active", "sibling", "advised", "reason"),
    [
        # commit 48 MiB, pull 52 MiB: close; a sibling reads base, so the safe pull wins.
        ((0, 48), True, Operation.PULL, "nothing-at-risk"),
        # the same copies with nothing at risk either way: the fewer bytes win.
        ((0, 48), False, Operation.COMMIT, "fewer-bytes"),
        # commit 30 MiB, pull 70 MiB: not close, so the fewer bytes win despite the risk.
        ((0, 30), True, Operation.COMMIT, "fewer-bytes"),
        # commit 70 MiB, pull 30 MiB: the pull copies fewer bytes.
        ((0, 70), True, Operation.PULL, "fewer-bytes"),
    ],
)
def test_close_copies_are_decided_by_what_a_commit_puts_at_risk(
    active: tuple[int, int], sibling: bool, advised: Operation, reason: str
) -> None:
    layers = [layer("base", None, (0, 100)), layer("active", "base", active)]
    if sibling:
        layers.append(layer("other", "base", (90, 100)))
    commit = plan(ImageGraph(layers), CommitRequest(image="/img/active"))
    pulled = pull(ImageGraph(layers))
    for shown in (commit, pulled):  # the same advice from either direction's plan
        choice = advise(shown)
        assert choice is not None
        assert (choice.operation, choice.reason) == (advised, reason)
        assert (choice.commit_bytes, choice.pull_bytes) == (
            (active[1] - active[0]) * MiB,
            (100 - active[1]) * MiB,
        )
    risk = advise(commit)
    assert risk is not None and (risk.commit_risk != 0) is sibling
