"""Collapse every disk of a VM: each disk's plan first, then each one runs through the runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backchain.core.errors import BackchainError, EngineError
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady
from backchain.engines.base import LibvirtTarget
from backchain.engines.libvirt.engine import plan_commit
from backchain.engines.libvirt.read import lookup_domain, open_connection, parse_disks
from backchain.engines.progress import CancelToken, ProgressSink

RunPlan = Callable[[CommitPlan, ProgressSink, CancelToken, LibvirtTarget], None]
"""How one disk's plan runs: the runner's run_plan, handed in by the caller."""


@dataclass(frozen=True)
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
        except BackchainError as err:
            plans.append((disk, err))
    return plans


def run_collapse(
    uri: str,
    domain: str,
    plans: Sequence[tuple[str, CommitPlan | BackchainError]],
    sink_for: Callable[[str], ProgressSink],
    cancel: CancelToken,
    run: RunPlan,
) -> list[DiskResult]:
    """Run plan_collapse's plans one disk after another, each disk reporting to its own sink.

    A failure on one disk does not stop the others; a disk that could not be planned is reported.
    """
    results: list[DiskResult] = []
    for disk, plan in plans:
        if isinstance(plan, BackchainError):
            results.append(DiskResult(disk, False, plan.summary, None))
            continue
        sink = sink_for(disk)
        try:
            if cancel.cancelled:
                raise EngineError("cancelled before this disk started")
            run(plan, sink, cancel, LibvirtTarget(uri, domain, disk))
        except BackchainError as err:
            results.append(DiskResult(disk, False, err.summary, plan))
            continue
        results.append(DiskResult(disk, True, _last_message(sink, plan), plan))
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
    """Commit each disk's whole chain into its bottom image, one disk after another.

    Each disk reports to its own sink; a failure on one disk does not stop the others.
    """
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
