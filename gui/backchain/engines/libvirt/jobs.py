"""virDomainBlockCommit on a running domain: events, progress, ready, pivot or keep, speed."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Mapping
from typing import Any

from backchain.core.errors import CancelledError, EngineError
from backchain.core.model import CommitPlan, OnReady, Operation, Step, StepKind
from backchain.engines.libvirt.read import (
    libvirt_error,
    lookup_domain,
    open_connection,
    require_libvirt,
)
from backchain.engines.progress import CancelToken, ProgressSink

_POLL_SECONDS = 0.2
# After the job vanishes from virDomainGetBlockJobInfo, its final event should follow at once;
# this bounds the wait in case the event was lost.
_FINAL_EVENT_SECONDS = 10.0
_loop_lock = threading.Lock()
_loop_started = False


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in one daemon thread, once per process.

    It must be registered before the connection that wants events is opened.
    """
    global _loop_started
    libvirt = require_libvirt()
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:  # runs in the libvirt event thread, for the life of the process
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def flags_value(names: object) -> int:
    """OR the libvirt constants named in a step's flags list."""
    libvirt = require_libvirt()
    value = 0
    if isinstance(names, list):
        for name in names:
            value |= int(getattr(libvirt, str(name)))
    return value


def set_speed(uri: str, domain: str, disk: str, bytes_per_second: int) -> None:
    """Change a running block job's bandwidth (virDomainBlockJobSetSpeed, in bytes per second).

    Safe to call from any thread while the job runs: it uses its own connection.
    """
    libvirt = require_libvirt()
    conn = open_connection(uri)
    try:
        dom = lookup_domain(conn, domain)
        dom.blockJobSetSpeed(
            disk, bytes_per_second, libvirt.VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES
        )
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"changing the speed of the job on {disk}") from err
    finally:
        conn.close()


def _status_name(status: int) -> str:
    libvirt = require_libvirt()
    names = {
        libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED: "completed",
        libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED: "failed",
        libvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED: "cancelled",
        libvirt.VIR_DOMAIN_BLOCK_JOB_READY: "ready",
    }
    return names.get(status, f"status {status}")


class _Job:
    """One block commit on one disk, followed through events and job info."""

    def __init__(self, conn: Any, dom: Any, disk: str, sink: ProgressSink) -> None:
        self.conn = conn
        self.dom = dom
        self.disk = disk
        self.sink = sink
        self.events: queue.Queue[str] = queue.Queue()
        self.callback_id: int | None = None

    def listen(self) -> None:
        """Subscribe to VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2 for this domain before the job starts."""
        libvirt = require_libvirt()

        def on_event(_conn: Any, _dom: Any, disk: str, _type: int, status: int, _o: Any) -> None:
            # runs in the libvirt event thread; the job thread reads the queue
            if disk == self.disk:
                self.events.put(_status_name(status))

        self.callback_id = self.conn.domainEventRegisterAny(
            self.dom, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, on_event, None
        )

    def close(self) -> None:
        """Unsubscribe."""
        if self.callback_id is not None:
            try:
                self.conn.domainEventDeregisterAny(self.callback_id)
            except Exception:  # the connection may already be gone
                pass
            self.callback_id = None

    def info(self) -> Mapping[str, int]:
        """virDomainGetBlockJobInfo with INFO_BANDWIDTH_BYTES ({} when no job runs)."""
        libvirt = require_libvirt()
        try:
            info = self.dom.blockJobInfo(
                self.disk, libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES
            )
        except libvirt.libvirtError as err:
            raise libvirt_error(err, f"reading the job on {self.disk}") from err
        return dict(info or {})

    def next_event(self, timeout: float) -> str | None:
        """The next event status, or None after ``timeout`` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None


class RunningSession:
    """One libvirt connection for a running domain's job: the commit, then pivot or keep."""

    def __init__(self, plan: CommitPlan, uri: str, domain: str) -> None:
        ensure_event_loop()
        self.plan = plan
        self.conn = open_connection(uri)
        self.dom = lookup_domain(self.conn, domain)
        self.outcome: str | None = None
        self.job: _Job | None = None
        self.end = 0

    def close(self) -> None:
        """Unsubscribe and close the connection."""
        if self.job is not None:
            self.job.close()
        self.conn.close()

    def run_step(self, index: int, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        """virDomainBlockCommit (followed until done, or until ready), or the pivot/keep."""
        if step.kind in (StepKind.LIBVIRT_COMMIT, StepKind.LIBVIRT_REBASE):
            self._commit(step, sink, cancel)
        elif step.kind is StepKind.LIBVIRT_ABORT:
            self._pivot_or_keep(sink, cancel)
        else:
            raise EngineError(f"a running domain's job cannot run a {step.kind.value} step")

    def _commit(self, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        libvirt = require_libvirt()
        call = dict(step.call or {})
        disk = str(call["disk"])
        self.job = _Job(self.conn, self.dom, disk, sink)
        self.job.listen()
        if self.job.info():
            # A job on this disk survived us (libvirt keeps it): follow it instead.
            sink.logged(f"continuing the block job that libvirt kept on {disk}")
        else:
            try:
                if step.kind is StepKind.LIBVIRT_REBASE:
                    self.dom.blockRebase(disk, call.get("base"), int(call.get("bandwidth", 0)),
                                         flags_value(call.get("flags")))  # fmt: skip
                else:
                    self.dom.blockCommit(disk, call.get("base"), call.get("top"),
                                         int(call.get("bandwidth", 0)),
                                         flags_value(call.get("flags")))  # fmt: skip
            except libvirt.libvirtError as err:
                raise libvirt_error(err, _render(call)) from err
        self.outcome, self.end = _follow(self.plan, self.job, cancel)

    def _pivot_or_keep(self, sink: ProgressSink, cancel: CancelToken) -> None:
        libvirt = require_libvirt()
        job = self.job
        assert job is not None
        choice = OnReady.ASK
        while choice is OnReady.ASK:
            choice = sink.ready()
            if choice is OnReady.ASK:
                choice = self.plan.request.on_ready
            if choice is OnReady.ASK:
                if cancel.wait(_POLL_SECONDS):
                    _abort(job, 0)
                    _wait_final(job)
                    raise CancelledError(
                        f"cancelled the commit of {self.plan.top}",
                        state=f"{self.plan.top} is still the active layer.",
                    )
        if cancel.cancelled:
            # Cancelled while ready (another disk of a collapse failed): never pivot now.
            _abort(job, 0)
            _wait_final(job)
            raise CancelledError(f"cancelled the commit of {self.plan.top} before its pivot",
                                 state=f"{self.plan.top} is still the active layer.")  # fmt: skip
        pivot = choice is OnReady.PIVOT
        flag_name = "VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT" if pivot else "0"
        sink.logged(f"# virDomainBlockJobAbort({job.disk!r}, flags={flag_name})")
        _abort(job, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT if pivot else 0)
        status = _wait_final(job)
        sink.advanced(self.end, self.end, "pivot" if pivot else "keep overlay")
        self.outcome = _final(self.plan, status, ready=True, pivot=pivot)


def _follow(plan: CommitPlan, job: _Job, cancel: CancelToken) -> tuple[str | None, int]:
    """Follow the job until it ends (its words) or, for an active commit, until it is ready."""
    name = os.path.basename
    pull = plan.operation is Operation.PULL
    active = plan.active_commit and not pull  # a pull never waits in ready
    phase = "pull" if pull else "commit"
    ready = False
    end = 0
    bandwidth: int | None = None
    while True:
        status = job.next_event(_POLL_SECONDS)
        if status == "ready":
            ready = True
        elif status in ("completed", "failed", "cancelled"):
            return _final(plan, status, ready=False), end
        if cancel.cancelled:
            _abort(job, 0)
            _wait_final(job)
            raise CancelledError(
                f"cancelled the {phase} of {name(plan.top)}",
                state=(
                    f"{name(plan.top)} is still backed by its old chain and reads correctly. "
                    "Running the pull again is safe."
                    if pull
                    else f"{name(plan.top)} and everything above it still read correctly; "
                    f"{name(plan.base)} may be partly written. Running the commit again is safe."
                ),
            )
        info = job.info()
        if not info:
            # The job is gone: its last event tells how it ended.
            return _final(plan, _wait_final(job), ready=False), end
        cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
        if info.get("bandwidth") != bandwidth:
            # Someone (set_speed, virsh blockjob --bandwidth) changed the limit: log it.
            bandwidth = int(info.get("bandwidth", 0))
            job.sink.logged(f"bandwidth: {bandwidth} bytes/s")
        if active and not ready and end > 0 and cur == end:
            # libvirt reports cur == end only once the job is ready; do not depend on the READY
            # event alone (a lost event would leave the job mirroring forever).
            ready = True
        if active and not ready and end > 0 and cur >= end - 1:
            # libvirt holds cur at end-1 until the job is ready: that is the last sync, not 99%.
            job.sink.advanced(cur, end, "synchronising")
        else:
            job.sink.advanced(cur, end, "ready" if ready else phase)
        if active and ready:
            return None, end


def _abort(job: _Job, flags: int) -> None:
    libvirt = require_libvirt()
    try:
        job.dom.blockJobAbort(job.disk, flags)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"virDomainBlockJobAbort on {job.disk}") from err


def _wait_final(job: _Job) -> str:
    """The job's final event status (completed, failed, cancelled)."""
    waited = 0.0
    while waited < _FINAL_EVENT_SECONDS:
        status = job.next_event(_POLL_SECONDS)
        waited += _POLL_SECONDS
        if status in ("completed", "failed", "cancelled"):
            return status
    # No event arrived: libvirt no longer lists the job, so it ended; we cannot tell how.
    return "ended"


def _final(plan: CommitPlan, status: str | None, *, ready: bool, pivot: bool = False) -> str:
    name = os.path.basename
    if plan.operation is Operation.PULL:
        return _final_pull(plan, status)
    if status == "failed":
        raise EngineError(
            f"libvirt reports that the block commit of {name(plan.top)} into "
            f"{name(plan.base)} failed (see the domain's log in /var/log/libvirt/qemu)",
            state=f"{name(plan.top)} and everything above it still read correctly.",
        )
    if ready and not pivot:
        return (
            f"Copied {name(plan.top)} into {name(plan.base)} and kept {name(plan.top)} as the "
            f"active layer; {name(plan.base)} holds a consistent copy."
        )
    if status == "cancelled":
        raise EngineError(f"the block commit of {name(plan.top)} was cancelled by someone else")
    text = f"Committed {name(plan.top)} into {name(plan.base)}."
    if pivot:
        text += f" {name(plan.base)} is now the active layer."
    if plan.deleted:
        text += " libvirt deleted " + ", ".join(name(p) for p in plan.deleted) + "."
    return text


def _final_pull(plan: CommitPlan, status: str | None) -> str:
    name = os.path.basename
    if status == "failed":
        raise EngineError(
            f"libvirt reports that the block pull into {name(plan.top)} failed (see the "
            "domain's log in /var/log/libvirt/qemu)",
            state=f"{name(plan.top)} is still backed by its old chain and reads correctly.",
        )
    if status == "cancelled":
        raise EngineError(f"the block pull into {name(plan.top)} was cancelled by someone else")
    where = f"it now stays on {name(plan.base)}" if plan.base else "it is now standalone"
    removed = ", ".join(name(p) for p in plan.merged)
    return f"Pulled {removed} into {name(plan.top)}; {where}."


def _render(call: Mapping[str, object]) -> str:
    flags = call.get("flags")
    flag_text = " | ".join(str(f) for f in flags) if isinstance(flags, list) else str(flags)
    return (
        f"{call.get('call')}({call.get('disk')!r}, base={call.get('base')!r}, "
        f"top={call.get('top')!r}, bandwidth={call.get('bandwidth')}, flags={flag_text or 0})"
    )
