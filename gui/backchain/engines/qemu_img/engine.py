"""The qemu-img engine: plan-time refusals, the pre-write check, one step at a time, the words."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

from backchain.core.errors import CancelledError, EngineError, ImageError, PlanError
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import (
    CommitPlan,
    CommitRequest,
    EngineKind,
    Operation,
    Step,
    StepKind,
)
from backchain.core.valueclass import replace
from backchain.engines import image_locks, process
from backchain.engines.base import ImageTarget, Target
from backchain.engines.files import facts, holders
from backchain.engines.files.scan import open_graph, walk_headers
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.qemu_img import resume
from backchain.engines.qemu_img.steps import commit_steps, encrypted_base_needs_b, pull_steps
from backchain.engines.qemu_img.words import describe_state


def _protocol_names(chain: Sequence[Layer]) -> list[Layer]:
    """Layers whose backing name carries a ``file:`` prefix: ``commit -b`` cannot match them."""
    return [layer for layer in chain if (layer.backing_name or "").startswith("file:")]


def check_secrets(secrets: tuple[str, ...]) -> None:
    """Secrets come from files, as qemu-img takes them; one secret serves every layer."""
    for spec in secrets:
        parts = spec.split(",")
        if parts[0] != "secret" or not any(p.startswith("id=") for p in parts[1:]):
            raise PlanError(f"--object {spec}: give secret,id=ID,file=KEYFILE")
        if not any(p.startswith("file=") for p in parts[1:]):
            raise PlanError(
                f"--object {spec}: read the secret from a file (file=KEYFILE), "
                "never from the command line, where other users can see it"
            )
    if len(secrets) > 1:
        raise PlanError("give one --object secret: Backchain opens every encrypted layer with it")


def check_encryption(plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...]) -> None:
    """Every encrypted layer qemu-img opens needs the secret, and an encrypted base must be
    top's own backing file (``-d``), since ``-b`` cannot name it."""
    check_secrets(secrets)
    opened = [*plan.chain[plan.chain.index(plan.top) :], *(r.image for r in plan.rebased)]
    encrypted = [p for p in opened if graph.layer(p).encrypted]
    if encrypted and not secrets:
        raise PlanError(
            f"{encrypted[0]} is encrypted, and qemu-img needs its secret to open it: pass "
            "--object secret,id=sec0,file=KEYFILE (the secret is read from the file)"
        )
    locked = encrypted_base_needs_b(plan, graph) if encrypted else None
    if locked is not None:
        raise PlanError(
            f"{locked.path} is encrypted, and qemu-img commit can only commit into an encrypted "
            f"base that is top's own backing file; commit one layer at a time (--shallow), "
            "or online"
        )


def check_runnable(plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...]) -> None:
    """Refuse at plan time what qemu-img would refuse at run time, naming the layer."""
    if plan.operation is Operation.PULL:
        check_pull_runnable(plan, graph, secrets)
        return
    check_encryption(plan, graph, secrets)
    span = [graph.layer(p) for p in plan.chain[plan.chain.index(plan.top) :]]
    named = _protocol_names(span[: span.index(graph.layer(plan.base))])
    if named:
        layer = named[0]
        raise PlanError(
            f"{layer.path} names its backing file '{layer.backing_name}' with a protocol "
            "prefix, which 'qemu-img commit -b' cannot match; rewrite the name first: "
            f"qemu-img rebase -u -b {layer.backing_name.removeprefix('file:')} "  # type: ignore[union-attr]
            f"-F {layer.backing_format} {layer.path}"
        )


def check_pull_runnable(plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...]) -> None:
    """A pull opens top and every layer below it; qemu-img rebase cannot limit its speed."""
    if plan.request.rate:
        raise PlanError(
            "qemu-img rebase has no bandwidth limit; pull offline without --rate, "
            "or pull online (--qmp or --connect), where the speed can be set"
        )
    opened = [plan.top, *plan.merged] + ([plan.base] if plan.base else [])
    encrypted = [p for p in opened if graph.layer(p).encrypted]
    if encrypted and not secrets:
        raise PlanError(
            f"{encrypted[0]} is encrypted, and qemu-img needs its secret to open it: pass "
            "--object secret,id=sec0,file=KEYFILE (the secret is read from the file)"
        )


def written_images(plan: CommitPlan) -> list[str]:
    """Everything the plan writes or removes: for a commit base, the merged layers and the
    re-pointed overlays; for a pull top (it grows) and the layers it deletes."""
    if plan.operation is Operation.PULL:
        return [plan.top, *plan.deleted]
    return [plan.base, *plan.merged, *(r.image for r in plan.rebased)]


def check_holders(paths: Sequence[str], own_steps: Sequence[Step] = ()) -> None:
    """Refuse images locked by another process; a Backchain job is named with its pid and job.

    A holder that is only ending (a killed qemu-img whose threads finish their I/O) is waited
    for, and so is one of ``own_steps`` left running by the job being resumed.
    """
    commands = [step.argv for step in own_steps if step.argv]

    def passing(holder: holders.Holder) -> bool:
        return holder.ending or holders.started_as(holder, commands)

    for path in paths:
        ours = image_locks.holder_of(path)
        if ours is not None and ours.get("pid") != os.getpid():
            raise PlanError(f"{path} is being changed by {image_locks.describe_holder(ours)}. "
                            "Wait until it ends.")  # fmt: skip
        if facts.lock_holder(path) is None:
            continue
        keeping = holders.wait_while_locked(path, passing, LOCK_WAIT_SECONDS)
        if keeping is not None:
            raise PlanError(_locked_message(path, keeping, commands))


LOCK_WAIT_SECONDS = 30.0
"""How long a job waits for a lock that its holder is letting go of by itself."""


def _locked_message(path: str, keeping: Sequence[holders.Holder],
                    commands: Sequence[Sequence[str]]) -> str:  # fmt: skip
    if not keeping or any(holder.is_vm for holder in keeping):
        who = ", ".join(h.describe() for h in keeping) or "another process"
        return (f"{path} is in use by a running QEMU: {who} holds its lock. "
                "Stop the VM, or commit online.")  # fmt: skip
    names = ", ".join(h.describe() for h in keeping)
    leftover = [h for h in keeping if holders.started_as(h, commands)]
    if leftover:
        return (f"{path} is still locked by {names}: a step of this job that kept running "
                "when Backchain stopped. It ends by itself; resume again after it.")  # fmt: skip
    return f"{path} is locked by {names}. Wait for it to end, or stop it."


def check_space(path: str, need: int | None) -> None:
    """Refuse when the file system of ``path`` cannot hold ``need`` more bytes."""
    free = facts.free_bytes(path)
    if need is not None and free is not None and need > free:
        raise PlanError(
            f"not enough free space for {path} to grow: {need} bytes to copy, {free} bytes free"
        )


def check_step_targets(steps: Sequence[Step]) -> None:
    """Rebase writes a header in place and delete unlinks: both need what the step targets."""
    for step in steps:
        if step.kind is StepKind.COMMIT and not facts.is_writable(step.target):
            raise PlanError(f"{step.target} is not writable, so the commit cannot change it")
        if step.kind is StepKind.PULL and not facts.is_writable(step.target):
            raise PlanError(f"{step.target} is not writable, so the pull cannot copy into it")
        if step.kind is StepKind.REBASE and not facts.is_writable(step.target):
            raise PlanError(f"{step.target} is not writable, so it cannot be re-pointed")
        if step.kind is StepKind.DELETE:
            directory = os.path.dirname(step.target)
            if not facts.directory_writable(directory):
                raise PlanError(f"{step.target} cannot be deleted: its directory {directory} "
                                "is read-only")  # fmt: skip


class QemuImgEngine:
    """Commits files on this machine with qemu-img."""

    kind = EngineKind.QEMU_IMG
    keeps_cancelled_record = True

    def read_graph(
        self, target: Target, meanwhile: Callable[[], object] | None = None
    ) -> ImageGraph:
        """The chain and the siblings in the scanned directories, with allocation (see
        open_graph for ``meanwhile``)."""
        assert isinstance(target, ImageTarget)
        return open_graph(target.image, scan_dirs(target), meanwhile=meanwhile)

    def prepare(self, graph: ImageGraph, target: Target, request: CommitRequest) -> CommitPlan:
        """core.plan with qemu-img's rules, the plan-time refusals, then the argv steps."""
        secrets = target.secrets if isinstance(target, ImageTarget) else ()
        request = replace(request, engine=EngineKind.QEMU_IMG)
        # Imported here: the CLI loads the planner while qemu-img reads the chain.
        from backchain.core import plan as planner

        plan = planner.plan(graph, request, planner.OFFLINE_RULES)
        check_runnable(plan, graph, secrets)
        if plan.operation is Operation.PULL:
            return replace(plan, steps=pull_steps(plan, graph, secrets))
        notes = [f"--delete also removes {layer.data_file}, the data file of {layer.path}"
                 for layer in map(graph.layer, plan.deleted) if layer.data_file]  # fmt: skip
        return replace(plan, steps=commit_steps(plan, graph, secrets),
                       notes=(*plan.notes, *notes))  # fmt: skip

    def written(self, plan: CommitPlan) -> Sequence[str]:
        """Everything the plan writes or removes."""
        return written_images(plan)

    def preflight(self, plan: CommitPlan, target: Target) -> None:
        """Just before the first write: the chain on disk is the planned one, and writable."""
        try:
            layers = walk_headers(plan.image)
        except ImageError as err:
            raise PlanError(f"cannot start: {err}") from err
        chain = [layer.path for layer in layers]
        if tuple(chain) != plan.chain:
            raise PlanError(
                f"the chain of {plan.image} changed since the plan was made; open it again "
                "and review the new plan"
            )
        check_holders([*written_images(plan)])
        # The image that grows: base for a commit (its data file, if it has one), top for a pull.
        grows = plan.top if plan.operation is Operation.PULL else plan.base
        data_file = next((layer.data_file for layer in layers if layer.path == grows), None)
        check_space(data_file or grows, plan.bytes_to_copy)
        if data_file is not None and not facts.is_writable(data_file):
            raise PlanError(f"{data_file}, the data file of {grows}, is not writable")
        check_step_targets(plan.steps)

    def resume_check(self, plan: CommitPlan, done: int, target: Target) -> None:
        """Before the rest of an interrupted job runs: the files are where it left them."""
        check_holders(written_images(plan), own_steps=plan.steps[done:])
        resume.check_resumable(plan, done)
        check_step_targets(plan.steps[done:])

    @contextlib.contextmanager
    def session(self, plan: CommitPlan, target: Target) -> Iterator[QemuImgSession]:
        """qemu-img needs no connection: each step is a process of its own."""
        yield QemuImgSession(plan)

    def state_after(self, plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
        """Where every file stands after ``done`` (and perhaps a part of ``failed``)."""
        return describe_state(plan, done, failed)


def scan_dirs(target: ImageTarget) -> list[str] | None:
    """The directories to scan: the default ones plus --scan, or only --scan."""
    if target.default_scan and not target.scan:
        return None
    extra = [os.path.abspath(d) for d in target.scan]
    if not target.default_scan:
        return extra
    from backchain.engines.files.scan import default_scan_dirs, read_chain

    defaults = default_scan_dirs(read_chain(target.image, with_qemu_info=False))
    return sorted({*defaults, *extra})


class QemuImgSession:
    """Runs the steps of one qemu-img plan, each as a process of its own."""

    def __init__(self, plan: CommitPlan) -> None:
        self.plan = plan
        self.total = plan.bytes_to_copy or 0
        self.outcome: str | None = None

    def run_step(self, index: int, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        """Run one step with live progress; EngineError names the files it worked on."""
        plan = self.plan
        copies = step.kind in (StepKind.COMMIT, StepKind.PULL)
        scale = self.total if copies and self.total else 100

        def on_fraction(fraction: float) -> None:
            sink.advanced(int(fraction * scale), scale, step.kind.value)

        if step.kind in (StepKind.COMMIT, StepKind.VERIFY, StepKind.PULL):
            try:
                process.run_streaming(step.argv, cwd=step.cwd, on_fraction=on_fraction,
                                      on_text=sink.logged,
                                      cancelled=lambda: cancel.cancelled)  # fmt: skip
            except CancelledError:
                raise
            except EngineError as err:
                if step.kind is StepKind.VERIFY and err.returncode == 1:
                    raise EngineError(
                        differ_message(plan),
                        argv=err.argv, returncode=err.returncode, stderr=err.stderr,
                    ) from err  # fmt: skip
                raise naming(plan, step, err) from err
            sink.advanced(scale, scale, step.kind.value)
            return
        try:
            process.run(step.argv, cwd=step.cwd)
        except EngineError as err:
            raise naming(plan, step, err) from err
        same = [s for s in plan.steps if s.kind == step.kind]
        sink.advanced(same.index(step) + 1, len(same), step.kind.value)


def differ_message(plan: CommitPlan) -> str:
    """The words for a verify that found a difference."""
    name = os.path.basename
    if plan.operation is Operation.PULL:
        return (f"{name(plan.top)} does not read as it did on its old chain after the pull, "
                "so nothing was deleted")  # fmt: skip
    return f"{name(plan.top)} and {name(plan.base)} differ after the commit, so nothing was deleted"


def naming(plan: CommitPlan, step: Step, err: EngineError) -> EngineError:
    """The same failure, with a message that names the files the step was working on."""
    name = os.path.basename
    doing = {
        StepKind.COMMIT: f"committing {name(plan.top)} into {name(plan.base)}",
        StepKind.PULL: f"pulling into {name(plan.top)}",
        StepKind.REBASE: f"re-pointing {name(step.target)} to {name(plan.base)}",
        StepKind.VERIFY: f"comparing {name(plan.top)} with "
        + ("its old chain" if plan.operation is Operation.PULL else name(plan.base)),
        StepKind.DELETE: f"deleting {name(step.target)}",
    }.get(step.kind, f"{step.kind.value} of {name(step.target)}")
    cause = err.message.removeprefix("qemu-img: ")
    if err.returncode is not None and err.returncode < 0:
        program = os.path.basename(err.argv[0]) if err.argv else "the command"
        cause = f"{program} was killed by signal {-err.returncode}"
    return EngineError(f"{doing} failed: {cause}", argv=err.argv, returncode=err.returncode,
                       stderr=err.stderr)  # fmt: skip
