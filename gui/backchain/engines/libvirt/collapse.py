"""Collapse every disk of a VM: each disk's plan first, then all run at once through the runner."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backchain.core.errors import BackchainError, EngineError
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady, Step, StepKind
from backchain.core.valueclass import valueclass
from backchain.engines.base import LibvirtTarget
from backchain.engines.libvirt.engine import plan_commit
from backchain.engines.libvirt.read import lookup_domain, open_connection, parse_disks
from backchain.engines.libvirt.snapshot_xml import SnapshotGuardError
from backchain.engines.progress import CancelToken, ProgressSink

DEFAULT_OFFLINE_JOBS = 2
"""qemu-img processes that a shut-off domain's collapse runs at once (they share one disk)."""

RunPlan = Callable[[CommitPlan, ProgressSink, CancelToken, LibvirtTarget], None]
"""How one disk's plan runs: the runner's run_plan, handed in by the caller."""


@valueclass(frozen=True)
class DiskResult:
    """How one disk's commit ended, for the collapse summary."""

    disk: str
    ok: bool
    message: str
    plan: CommitPlan | None


def plan_collapse(
    uri: str,
    domain: str,
    *,
    disks: Sequence[str] | None = None,
    on_ready: OnReady = OnReady.PIVOT,
    repoint: bool = True,
    rate: int = 0,
) -> list[tuple[str, CommitPlan | BackchainError]]:
    """Each disk's plan for committing its whole chain into its bottom image (or why not).

    The plans are made before anything runs, so that they can be shown and then run unchanged.
    """
    conn = open_connection(uri)
    try:
        names = [d.target for d in parse_disks(lookup_domain(conn, domain).XMLDesc(0))]
    finally:
        conn.close()
    plans: list[tuple[str, CommitPlan | BackchainError]] = []
    for disk in disks if disks is not None else names:
        request = CommitRequest(image="", on_ready=on_ready, rate=rate, engine=EngineKind.LIBVIRT)
        try:
            plans.append((disk, plan_commit(LibvirtTarget(uri, domain, disk), request,
                                            repoint=repoint)))  # fmt: skip
        except SnapshotGuardError as err:
            plans.append((disk, _collapse_guard_error(err, uri, domain, disk)))
        except BackchainError as err:
            plans.append((disk, err))
    return plans


def _collapse_guard_error(
    err: SnapshotGuardError, uri: str, domain: str, disk: str
) -> SnapshotGuardError:
    """The guard's refusal in a collapse's words: a collapse never drops snapshot metadata."""
    names = err.names
    many = len(names) > 1
    message = (
        f"{disk}: {err.what}, which libvirt snapshot{'s' if many else ''} {', '.join(names)} "
        f"of domain '{domain}' name{'' if many else 's'}. A collapse does not drop snapshot "
        f"metadata: delete the snapshot{'s' if many else ''} the libvirt way, newest first "
        f"(backchain snapshot-delete --connect {uri} --domain {domain} {names[0]}), or commit "
        f"this disk alone with --disk {disk} --drop-snapshot-metadata"
    )
    refused = SnapshotGuardError(message, names, err.what)
    refused.__cause__ = err
    return refused


class _DiskCancel(CancelToken):
    """One disk's Cancel: pressed for this disk alone, or for the whole collapse."""

    def __init__(self, whole: CancelToken) -> None:
        super().__init__()
        self.whole = whole

    @property
    def cancelled(self) -> bool:
        """This disk, or the whole collapse, was cancelled."""
        return super().cancelled or self.whole.cancelled

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on either cancel."""
        deadline = time.monotonic() + seconds
        while not self.cancelled and time.monotonic() < deadline:
            super().wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.cancelled


class PivotBarrier:
    """Holds each running disk's pivot until every one of them is ready.

    If a disk fails first, the barrier breaks: every disk still waiting is cancelled before its
    pivot, so the VM is never left with some disks pivoted and others not.
    """

    def __init__(self, disks: Sequence[str], cancels: dict[str, _DiskCancel]) -> None:
        self.waiting = set(disks)
        self.ready: set[str] = set()
        self.broken = False
        self.cancels = cancels
        self._lock = threading.Condition()

    def arrive(self, disk: str) -> bool:
        """``disk`` is ready; wait for the others. False when the barrier broke."""
        with self._lock:
            self.ready.add(disk)
            self._lock.notify_all()
            while not self.broken and self.ready < self.waiting:
                if self.cancels[disk].cancelled:
                    return False
                self._lock.wait(0.1)
            return not self.broken

    def fail(self, disk: str) -> None:
        """``disk`` failed before its pivot: cancel the disks still waiting for theirs."""
        with self._lock:
            if disk not in self.waiting or self.ready >= self.waiting:
                return
            self.broken = True
            for other in self.waiting - {disk}:
                self.cancels[other].cancel()
            self._lock.notify_all()


class _HeldSink:
    """A disk's sink whose ready() waits at the barrier, so that all disks pivot together."""

    def __init__(self, inner: ProgressSink, disk: str, barrier: PivotBarrier) -> None:
        self.inner = inner
        self.disk = disk
        self.barrier = barrier
        self.outcome: tuple[bool, str] | None = None

    def started(self, plan: CommitPlan) -> None:
        """Forward."""
        self.inner.started(plan)

    def step_started(self, step: Step) -> None:
        """Forward."""
        self.inner.step_started(step)

    def advanced(self, done: int, total: int, phase: str) -> None:
        """Forward."""
        self.inner.advanced(done, total, phase)

    def logged(self, text: str) -> None:
        """Forward."""
        self.inner.logged(text)

    def ready(self) -> OnReady:
        """Wait until every running disk is ready; the plan's choice then stands."""
        if self.barrier.arrive(self.disk):
            self.inner.logged("every disk is ready: pivoting")
            return OnReady.ASK
        self.barrier.cancels[self.disk].cancel()
        return OnReady.ASK

    def finished(self, ok: bool, message: str) -> None:
        """Forward, and keep the outcome for the summary."""
        self.outcome = (ok, message)
        self.inner.finished(ok, message)


def _runs_live(plan: CommitPlan) -> bool:
    return plan.active_commit and not (plan.steps and plan.steps[0].kind is StepKind.LIBVIRT_STATE)


def run_collapse(
    uri: str,
    domain: str,
    plans: Sequence[tuple[str, CommitPlan | BackchainError]],
    sink_for: Callable[[str], ProgressSink],
    cancel: CancelToken,
    run: RunPlan,
    *,
    offline_jobs: int = DEFAULT_OFFLINE_JOBS,
    concurrent: bool = True,
) -> list[DiskResult]:
    """Run plan_collapse's plans, every disk at once, each disk reporting to its own sink.

    Running disks' active commits pivot together once all are ready (libvirt's own snapshot
    deletion runs its disks' jobs at the same time too); at most ``offline_jobs`` qemu-img
    processes run at once for a shut-off domain. A disk that could not be planned is reported.
    ``concurrent=False`` runs one disk after another (each pivots on its own), for comparison.
    """
    runnable = {disk: plan for disk, plan in plans if isinstance(plan, CommitPlan)}
    cancels = {disk: _DiskCancel(cancel) for disk in runnable}
    live = [d for d, p in runnable.items() if _runs_live(p)] if concurrent else []
    barrier = PivotBarrier(live, cancels)
    offline = threading.BoundedSemaphore(max(1, offline_jobs))

    def one(disk: str, plan: CommitPlan) -> DiskResult:  # runs in a pool thread, one per disk
        sink = _HeldSink(sink_for(disk), disk, barrier)
        shut_off = bool(plan.steps) and plan.steps[0].kind is StepKind.LIBVIRT_STATE
        slot: contextlib.AbstractContextManager[object] = (
            offline if shut_off else contextlib.nullcontext()
        )
        try:
            with slot:
                if cancels[disk].cancelled:
                    raise EngineError("cancelled before this disk started")
                run(plan, sink, cancels[disk], LibvirtTarget(uri, domain, disk))
        except BackchainError as err:
            barrier.fail(disk)
            return DiskResult(disk, False, err.summary, plan)
        return DiskResult(disk, True, _last_message(sink, plan), plan)

    with ThreadPoolExecutor(max_workers=max(1, len(runnable) if concurrent else 1)) as pool:
        futures = {disk: pool.submit(one, disk, plan) for disk, plan in runnable.items()}
        done = {disk: future.result() for disk, future in futures.items()}
    results = []
    for disk, plan in plans:
        if isinstance(plan, BackchainError):
            results.append(DiskResult(disk, False, plan.summary, None))
        else:
            results.append(done[disk])
    return results


def collapse_domain(
    uri: str,
    domain: str,
    sink_for: Callable[[str], ProgressSink],
    cancel: CancelToken,
    run: RunPlan,
    *,
    disks: Sequence[str] | None = None,
    on_ready: OnReady = OnReady.PIVOT,
    repoint: bool = True,
    rate: int = 0,
) -> list[DiskResult]:
    """Commit each disk's whole chain into its bottom image, every disk at once."""
    plans = plan_collapse(uri, domain, disks=disks, on_ready=on_ready, repoint=repoint, rate=rate)
    return run_collapse(uri, domain, plans, sink_for, cancel, run)


def _last_message(sink: Any, plan: CommitPlan) -> str:
    outcome = getattr(sink, "outcome", None)
    if isinstance(outcome, tuple) and len(outcome) == 2:
        return str(outcome[1])
    return f"committed {os.path.basename(plan.top)} into {os.path.basename(plan.base)}"


def summary(domain: str, results: Sequence[DiskResult]) -> str:
    """One line per disk and a count, for the end of "collapse this VM's chains"."""
    lines = [f"{'ok' if r.ok else 'FAILED'}  {r.disk}: {r.message}" for r in results]
    good = sum(1 for r in results if r.ok)
    lines.append(f"{domain}: {good} of {len(results)} disks collapsed")
    return "\n".join(lines)
