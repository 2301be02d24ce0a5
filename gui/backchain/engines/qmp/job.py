"""A planned block-commit job over QMP: events, polling, ready, finalize, dismiss; then deletes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from qemu.qmp import EventListener

from backchain.core.errors import CancelledError, EngineError
from backchain.core.model import CommitPlan, OnReady, Operation, StepKind
from backchain.engines.base import LiveControl, QmpTarget
from backchain.engines.progress import CancelToken, ProgressSink
from backchain.engines.qmp.session import DEFAULT_TIMEOUT, QmpSession

POLL_SECONDS = 0.2
"""query-jobs about five times a second: smooth progress, negligible load on QEMU."""

CLOSE_WAIT_SECONDS = 10.0
"""How long DELETE waits for QEMU to let go of the files it deletes after the job."""

_JOB_EVENTS = (
    "JOB_STATUS_CHANGE",
    "BLOCK_JOB_ERROR",
    "BLOCK_JOB_READY",
    "BLOCK_JOB_COMPLETED",
    "BLOCK_JOB_CANCELLED",
)


class QmpJobControl(LiveControl):
    """A window's live control of one QEMU: its socket address plus speed and pivot choices."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.address = address
        self.timeout = timeout
        self.close_wait = CLOSE_WAIT_SECONDS
        """Seconds DELETE waits for QEMU to close the merged files."""

    def target(self) -> QmpTarget:
        """The typed target the runner takes, steered by this control."""
        return QmpTarget(self.address, timeout=self.timeout, control=self,
                         close_wait=self.close_wait)  # fmt: skip


def keep_overlay_outcome(plan: CommitPlan) -> str:
    """The words for an active commit that kept top as the active layer."""
    return f"{os.path.basename(plan.base)} holds a copy; {plan.image} stays the active layer"


def cancel_state(plan: CommitPlan) -> str:
    """Where the files stand after a job that was cancelled or cut off."""
    if plan.operation is Operation.PULL:
        return (
            f"{plan.top} is still backed by its old chain and reads correctly; it may "
            "already hold some of the pulled data. Running the same pull again is safe."
        )
    if plan.active_commit:
        return f"{plan.image} is still the active layer; its chain is unchanged."
    return (
        f"{plan.base} may be partly written. {plan.top} and its overlays still "
        "read correctly. Running the same commit again is safe and completes it."
    )


class CommitJob:
    """One block job's state machine (block-commit, or block-stream, which never reaches
    ready); every method runs in the runner thread's loop."""

    def __init__(
        self, plan: CommitPlan, sink: ProgressSink, cancel: CancelToken, target: QmpTarget
    ) -> None:
        self.plan = plan
        self.sink = sink
        self.cancel = cancel
        self.target = target
        self.control = target.control
        self.control.reset()
        kinds = (StepKind.BLOCK_COMMIT, StepKind.BLOCK_STREAM)
        self.commit = next((s for s in plan.steps if s.kind in kinds), None)
        if self.commit is None or self.commit.call is None:
            raise EngineError("the plan has no block-commit or block-stream step to run over QMP")
        self.phase = "pull" if self.commit.kind is StepKind.BLOCK_STREAM else "commit"
        arguments: Mapping[str, Any] = self.commit.call.get("arguments") or {}
        self.job_id = str(arguments.get("job-id"))
        self.cancelling = False
        self.chose: OnReady | None = None
        self.errors: list[str] = []

    async def run(self) -> None:
        """Start the job (or take over ours that QEMU kept) and follow it to its end."""
        assert self.commit is not None and self.commit.call is not None
        async with QmpSession(self.target.address, self.target.timeout) as session:
            listener = EventListener(_JOB_EVENTS, self._ours)
            with session.client.listen(listener):
                if not await self._adopt_leftover(session):
                    await session.execute(
                        str(self.commit.call["execute"]), self.commit.call.get("arguments")
                    )
                    self.sink.logged(f"started job {self.job_id}")
                try:
                    await self._follow(session, listener)
                except EngineError as exc:
                    if not exc.state:
                        exc.state = self._cancel_state()
                    raise

    async def _adopt_leftover(self, session: QmpSession) -> bool:
        """Deal with a job of ours left behind by a connection that was cut mid-job.

        A job that still runs is followed to its end instead of being started twice (QEMU
        would refuse the duplicate job id); a concluded one is dismissed so it can start anew.
        """
        jobs = await session.execute("query-jobs")
        leftover = next((dict(job) for job in jobs if job.get("id") == self.job_id), None)
        if leftover is None:
            return False
        status = str(leftover.get("status"))
        if status in ("concluded", "null"):
            await session.execute("job-dismiss", {"id": self.job_id})
            self.sink.logged(f"dismissed the earlier, concluded job {self.job_id}")
            return False
        self.sink.logged(f"continuing job {self.job_id}, left {status} by an earlier connection")
        return True

    def _ours(self, event: Mapping[str, Any]) -> bool:
        data = event.get("data") or {}
        return bool(data.get("id") == self.job_id or data.get("device") == self.job_id)

    def kept_overlay(self) -> bool:
        """Whether the user kept top as the active layer (the deletes do not run then)."""
        return self.chose is OnReady.KEEP_OVERLAY

    async def _follow(self, session: QmpSession, listener: EventListener) -> None:
        """Poll and react until the job is concluded and dismissed."""
        while True:
            job = await self._query(session)
            # After the query: QEMU sends events before the reply that follows them.
            for event in listener.clear():
                self._on_event(event)
            status = str(job.get("status"))
            total = int(job.get("total-progress") or 0)
            self.sink.advanced(int(job.get("current-progress") or 0), total, self.phase)
            speed = self.control.take_speed()
            if speed is not None and status not in ("pending", "concluded", "aborting", "null"):
                await session.execute(
                    "block-job-set-speed", {"device": self.job_id, "speed": speed}
                )
                self.sink.logged(f"bandwidth set to {speed} bytes/s")
            if self.cancel.cancelled and not self.cancelling and status != "concluded":
                self.cancelling = True
                await session.execute("job-cancel", {"id": self.job_id})
                self.sink.logged("cancel requested")
            elif status == "ready" and not self.cancelling and self.chose is None:
                await self._on_ready(session)
            elif status == "pending":
                await session.execute("job-finalize", {"id": self.job_id})
            elif status == "concluded":
                await self._conclude(session, job)
                return
            await self._sleep()

    async def _sleep(self) -> None:
        # Wake early for cancel without blocking the loop: the token is a threading.Event.
        deadline = time.monotonic() + POLL_SECONDS
        while time.monotonic() < deadline and not (self.cancel.cancelled and not self.cancelling):
            await asyncio.sleep(0.02)

    async def _query(self, session: QmpSession) -> Mapping[str, Any]:
        jobs = await session.execute("query-jobs")
        for job in jobs:
            if job.get("id") == self.job_id:
                return dict(job)
        raise EngineError(
            f"job {self.job_id} vanished from QEMU at {self.target.address} before it was "
            "dismissed (another client dismissed it?)"
        )

    def _on_event(self, event: Mapping[str, Any]) -> None:
        data = event.get("data") or {}
        name = event.get("event")
        if name == "BLOCK_JOB_ERROR":
            self.errors.append(
                f"I/O error on {data.get('operation', 'access')} (action: {data.get('action')})"
            )
        elif name == "JOB_STATUS_CHANGE":
            self.sink.logged(f"job {self.job_id}: {data.get('status')}")
        elif name == "BLOCK_JOB_READY":
            self.control.mark_ready()

    async def _on_ready(self, session: QmpSession) -> None:
        self.control.mark_ready()
        choice = self.control.take_choice()
        if choice is None or choice is OnReady.ASK:
            asked = self.sink.ready()
            planned = self.plan.request.on_ready
            choice = planned if planned is not OnReady.ASK else asked
        if choice is OnReady.PIVOT:
            self.chose = choice
            await session.execute("job-complete", {"id": self.job_id})
            self.sink.logged("pivot requested (job-complete)")
        elif choice is OnReady.KEEP_OVERLAY:
            self.chose = choice
            await session.execute("job-cancel", {"id": self.job_id})
            self.sink.logged("keep overlay requested (job-cancel once ready)")

    async def _conclude(self, session: QmpSession, job: Mapping[str, Any]) -> None:
        error = job.get("error")
        await session.execute("job-dismiss", {"id": self.job_id})
        if self.cancelling:
            raise CancelledError(
                f"the {self.phase} of {os.path.basename(self.plan.top)} was cancelled",
                state=self._cancel_state(),
            )
        if error and not (self.kept_overlay() and "cancel" in str(error).lower()):
            detail = "\n".join(self.errors)
            what = (
                f"pull into {os.path.basename(self.plan.top)}"
                if self.phase == "pull"
                else f"commit of {os.path.basename(self.plan.top)} into {self.plan.base}"
            )
            raise EngineError(
                f"QEMU's {what} failed: {error}",
                stderr=detail,
            )
        if self.errors:
            self.sink.logged("; ".join(self.errors))

    def _cancel_state(self) -> str:
        return cancel_state(self.plan)
