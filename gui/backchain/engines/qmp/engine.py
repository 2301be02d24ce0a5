"""The QMP engine: a running QEMU's live graph, block-commit by node name, and its words."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Sequence

from backchain.core import plan as planner
from backchain.core.errors import CancelledError, EngineError, PlanError
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import (
    CommitPlan,
    CommitRequest,
    EngineKind,
    OnReady,
    Operation,
    Step,
    StepKind,
)
from backchain.core.valueclass import replace
from backchain.engines import process
from backchain.engines.base import QmpTarget, Target
from backchain.engines.files import facts
from backchain.engines.files.scan import default_scan_dirs, load_extents, scan_directories
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.qmp.graph import read_qmp_graph
from backchain.engines.qmp.job import (
    CommitJob,
    cancel_state,
    keep_overlay_outcome,
)
from backchain.engines.qmp.release import delete_when_closed, own_node
from backchain.engines.qmp.session import QmpSession
from backchain.engines.qmp.steps import commit_steps, pull_steps


def node_label(layer: Layer) -> str:
    """QMP names layers by node name."""
    return layer.node_name or layer.path


def device_label(layer: Layer) -> str:
    """A chain is named by its device (vd0) where it has one, else by its root node."""
    return layer.extra.get("device") or node_label(layer)


RULES = planner.PlanRules(
    live=True,
    refuse_in_use=False,
    writes=planner.WriteCheck.BASE,
    label=node_label,
    disk=device_label,
)


def _target(target: Target) -> QmpTarget:
    if not isinstance(target, QmpTarget):
        raise PlanError("an online commit needs the QMP socket address of the running QEMU")
    return target


def with_siblings(graph: ImageGraph, target: QmpTarget) -> ImageGraph:
    """Add the images on disk that share a layer of the live chain (QEMU does not know them)."""
    directories = sorted({*(default_scan_dirs(graph) if target.default_scan else []),
                          *(os.path.abspath(d) for d in target.scan)})  # fmt: skip
    directories = [d for d in directories if os.path.isdir(d)]
    scanned = scan_directories(graph, directories)
    found = [layer.path for layer in scanned if layer.found_by_scan]
    return load_extents(scanned, found) if found else scanned


def with_space(graph: ImageGraph) -> ImageGraph:
    """Each open file's free space, so the plan refuses a job that cannot fit, as offline.

    QEMU reports no free space; its nodes name the files, so the file system is asked.
    """
    layers = [
        replace(layer, free_bytes=facts.free_bytes(layer.data_file or layer.path))
        for layer in graph
        if layer.free_bytes is None and os.path.isabs(layer.path) and os.path.exists(layer.path)
    ]
    return graph.with_layers(layers) if layers else graph


_ACTIVE_DELETE_NOTE = (
    "after the pivot the VM writes base alone, so top is not compared with base before it is "
    "deleted: the job made them equal at the pivot, and QEMU flushes base first"
)


class QmpEngine:
    """Commits the chain of a running QEMU with block-commit."""

    kind = EngineKind.QMP
    keeps_cancelled_record = False

    def read_graph(self, target: Target) -> ImageGraph:
        """The live graph of the target's device, and the siblings found on disk."""
        qmp = _target(target)
        live = read_qmp_graph(qmp.address, qmp.device, timeout=qmp.timeout)
        return with_space(with_siblings(live, qmp))

    def prepare(self, graph: ImageGraph, target: Target, request: CommitRequest) -> CommitPlan:
        """core.plan with QMP's rules (ACTIVE for the active layer), then block-commit."""
        request = replace(request, engine=EngineKind.QMP)
        plan = planner.plan(graph, request, RULES)
        build = pull_steps if plan.operation is Operation.PULL else commit_steps
        plan = replace(plan, steps=build(plan, graph))
        if plan.deleted and plan.request.verify and plan.active_commit:
            plan = replace(plan, notes=(*plan.notes, _ACTIVE_DELETE_NOTE))
        own = [(path, own_node(graph.layer(path))) for path in plan.deleted]
        held = [f"{os.path.basename(path)} ('{node}')" for path, node in own if node]
        if held:
            note = (
                "QEMU holds " + ", ".join(held) + " as nodes of their own (-blockdev), which it "
                "keeps open after the job: Backchain removes each with blockdev-del once "
                "nothing in QEMU uses it, then deletes the file"
            )
            plan = replace(plan, notes=(*plan.notes, note))
        return plan

    def written(self, plan: CommitPlan) -> Sequence[str]:
        """Base, the merged layers, and top's overlay whose backing name QEMU rewrites; for a
        pull, top and the layers it deletes."""
        paths = [plan.base, *plan.merged, *(r.image for r in plan.rebased)]
        if plan.operation is Operation.PULL:
            paths = [plan.top, *plan.deleted]
        return [p for p in paths if os.path.isabs(p)]

    def preflight(self, plan: CommitPlan, target: Target) -> None:
        """Just before block-commit: the live chain is the planned one; base can grow."""
        qmp = _target(target)
        live = read_qmp_graph(qmp.address, None, extents=False, timeout=qmp.timeout)
        image = live.find(plan.image)
        chain = tuple(layer.path for layer in live.chain(image.path)) if image else ()
        if chain != plan.chain:
            raise PlanError(
                f"the chain of {plan.image} in QEMU at {qmp.address} changed since the plan was "
                "made; read it again and review the new plan"
            )
        grows = plan.top if plan.operation is Operation.PULL else plan.base
        free = facts.free_bytes(grows) if os.path.isabs(grows) else None
        if plan.bytes_to_copy is not None and free is not None and plan.bytes_to_copy > free:
            raise PlanError(f"not enough free space for {grows} to grow: "
                            f"{plan.bytes_to_copy} bytes to copy, {free} bytes free")  # fmt: skip

    def resume_check(self, plan: CommitPlan, done: int, target: Target) -> None:
        """QEMU holds the files and checks the nodes itself; a job it kept is taken over."""
        _target(target)

    @contextlib.contextmanager
    def session(self, plan: CommitPlan, target: Target) -> Iterator[QmpRunSession]:
        """Each step opens its own connection in this thread, with its own event loop."""
        yield QmpRunSession(plan, _target(target))

    def state_after(self, plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
        """Where every file stands after ``done``."""
        name = os.path.basename
        if plan.operation is Operation.PULL:
            if not any(step.kind is StepKind.BLOCK_STREAM for step in done):
                return cancel_state(plan)
            kept = [p for p in plan.deleted if os.path.exists(p)]
            where = f"backed by {name(plan.base)}" if plan.base else "standalone"
            return f"{name(plan.top)} holds the pulled data and is {where}." + (
                " Not deleted: " + ", ".join(map(name, kept)) if kept else ""
            )
        if not any(step.kind is StepKind.BLOCK_COMMIT for step in done):
            if plan.active_commit:
                return f"{plan.image} is still the active layer; its chain is unchanged."
            return (
                f"{name(plan.base)} may be partly written. {name(plan.top)} and its overlays "
                "still read correctly. Running the same commit again is safe and completes it."
            )
        kept = [p for p in plan.deleted if os.path.exists(p)]
        text = f"{name(plan.base)} holds the merged data of {name(plan.top)}."
        if kept:
            text += " Not deleted: " + ", ".join(map(name, kept))
        return text


class QmpRunSession:
    """Runs a QMP plan's steps: block-commit (followed to its end), then the deletes."""

    def __init__(self, plan: CommitPlan, target: QmpTarget) -> None:
        self.plan = plan
        self.target = target
        self.outcome: str | None = None
        self.kept_overlay = False

    def run_step(self, index: int, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        """One step, in an event loop of this thread's own."""
        if step.kind in (StepKind.BLOCK_COMMIT, StepKind.BLOCK_STREAM):
            job = CommitJob(self.plan, sink, cancel, self.target)
            asyncio.run(job.run())
            self.kept_overlay = job.kept_overlay()
            if self.kept_overlay or (
                self.plan.active_commit and self.plan.request.on_ready is OnReady.KEEP_OVERLAY
            ):
                self.outcome = keep_overlay_outcome(self.plan)
            return
        if step.kind is StepKind.VERIFY and step.call is not None:
            asyncio.run(flush_node(self.plan, self.target, step, sink))
            return
        if step.kind is StepKind.VERIFY:
            verify_before_delete(self.plan, step, sink, cancel)
            return
        if step.kind is StepKind.DELETE:
            if self.kept_overlay:
                sink.logged(f"kept {step.target}: it is still the active layer")
                return
            asyncio.run(delete_when_closed(self.target, step, sink, self.plan.operation))
            return
        raise PlanError(f"the QMP engine cannot run a {step.kind.value} step")


def verify_before_delete(
    plan: CommitPlan, step: Step, sink: ProgressSink, cancel: CancelToken
) -> None:
    """qemu-img compare before any file goes: a pulled top with top on its old chain, or a
    commit's top with base."""
    name = os.path.basename

    def on_fraction(fraction: float) -> None:
        sink.advanced(int(fraction * 100), 100, step.kind.value)

    try:
        process.run_streaming(step.argv, cwd=step.cwd, on_fraction=on_fraction,
                              on_text=sink.logged, cancelled=lambda: cancel.cancelled)  # fmt: skip
    except CancelledError:
        raise
    except EngineError as err:
        pulled = plan.operation is Operation.PULL
        other = "its old chain" if pulled else name(plan.base)
        differs = (
            f"{name(plan.top)} does not read as it did on its old chain after the pull"
            if pulled
            else f"{name(plan.base)} does not read like {name(plan.top)} after the commit"
        )
        words = (
            f"{differs}, so nothing was deleted"
            if err.returncode == 1
            else f"comparing {name(plan.top)} with {other} failed: {err.message}"
        )
        raise EngineError(words, argv=err.argv, returncode=err.returncode,
                          stderr=err.stderr) from err  # fmt: skip
    sink.advanced(100, 100, step.kind.value)


async def flush_node(plan: CommitPlan, target: QmpTarget, step: Step, sink: ProgressSink) -> None:
    """Make QEMU write a node's cached metadata, so the file on disk holds what the job wrote."""
    call = step.call or {}
    async with QmpSession(target.address, target.timeout) as session:
        said = str(await session.execute(str(call["execute"]), call.get("arguments")) or "")
    if said.strip():  # HMP answers a successful flush with nothing
        raise EngineError(
            f"QEMU could not flush {os.path.basename(step.target)} ({said.strip()}), so nothing "
            "was deleted",
            argv=(str(call["execute"]), str(call.get("arguments"))),
        )
    sink.logged(f"QEMU flushed {step.target} to disk")
