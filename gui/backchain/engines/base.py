"""The Engine protocol every engine implements, and the typed targets that say where a job runs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager

from backchain.core.errors import EngineError
from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, CommitRequest, EngineKind, OnReady, Step
from backchain.core.static_typing import Protocol
from backchain.core.valueclass import field, valueclass
from backchain.engines.progress import CancelToken, ProgressSink

DEFAULT_QMP_TIMEOUT = 15.0
"""Seconds to wait for QEMU to answer one command before the peer is declared unresponsive."""


@valueclass(frozen=True)
class ImageTarget:
    """Image files on this machine, committed with qemu-img."""

    image: str
    """The chain's active image."""
    scan: tuple[str, ...] = ()
    """Directories searched for siblings, in addition to (or instead of) the default ones."""
    default_scan: bool = True
    """Also scan the directories of the chain's own files."""
    secrets: tuple[str, ...] = ()
    """qemu-img ``--object secret,...`` specifications (never the secret itself)."""

    @property
    def kind(self) -> EngineKind:
        """The engine that runs plans for this target."""
        return EngineKind.QEMU_IMG

    def describe(self) -> str:
        """Where the job runs, for the journal and messages."""
        return self.image


class LiveControl:
    """Steers a running job from another thread: its speed, and pivot or keep overlay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._speed: int | None = None
        self._choice: OnReady | None = None
        self._ready = False

    def set_speed(self, bytes_per_second: int) -> None:
        """Ask for a new bandwidth limit (0 = unlimited); applied at the job's next poll."""
        if bytes_per_second < 0:
            raise ValueError("the bandwidth limit cannot be negative")
        with self._lock:
            self._speed = bytes_per_second

    def choose(self, choice: OnReady) -> None:
        """Pivot or keep the overlay now; refused before the job is ready."""
        with self._lock:
            if not self._ready and choice is not OnReady.ASK:
                raise EngineError(
                    "the commit job is not ready yet: base has not caught up with top, "
                    "so it cannot pivot or keep the overlay now"
                )
            self._choice = choice

    @property
    def ready(self) -> bool:
        """Whether the active commit has reached ``ready``."""
        with self._lock:
            return self._ready

    def reset(self) -> None:
        """Forget the previous job's state (a window keeps one control per connection)."""
        with self._lock:
            self._speed, self._choice, self._ready = None, None, False

    def mark_ready(self) -> None:
        """The engine saw the job reach ``ready``."""
        with self._lock:
            self._ready = True

    def take_speed(self) -> int | None:
        """The speed asked for since the last call, if any."""
        with self._lock:
            speed, self._speed = self._speed, None
            return speed

    def take_choice(self) -> OnReady | None:
        """The pivot/keep choice made since the last call, if any."""
        with self._lock:
            choice, self._choice = self._choice, None
            return choice


@valueclass(frozen=True)
class QmpTarget:
    """A running QEMU's QMP socket (a unix path or ``host:port``) and, optionally, one device."""

    address: str
    device: str | None = None
    timeout: float = DEFAULT_QMP_TIMEOUT
    scan: tuple[str, ...] = ()
    default_scan: bool = True
    control: LiveControl = field(default_factory=LiveControl, compare=False, repr=False)
    close_wait: float = 10.0
    """Seconds DELETE waits for QEMU to close the merged files."""

    @property
    def kind(self) -> EngineKind:
        """The engine that runs plans for this target."""
        return EngineKind.QMP

    def describe(self) -> str:
        """Where the job runs, for the journal and messages."""
        return self.address


@valueclass(frozen=True)
class LibvirtTarget:
    """One disk of a libvirt domain: the connection URI, the domain and the disk target."""

    uri: str
    domain: str
    disk: str
    scan: tuple[str, ...] = ()
    default_scan: bool = True

    @property
    def kind(self) -> EngineKind:
        """The engine that runs plans for this target."""
        return EngineKind.LIBVIRT

    def describe(self) -> str:
        """Where the job runs, for the journal and messages."""
        return f"{self.uri} {self.domain} {self.disk}"


Target = ImageTarget | QmpTarget | LibvirtTarget


def target_to_record(target: Target) -> dict[str, object]:
    """What the journal keeps of a target, so that a re-run reaches the same files or VM."""
    if isinstance(target, ImageTarget):
        return {"kind": "qemu-img", "image": target.image, "scan": list(target.scan),
                "default_scan": target.default_scan, "secrets": list(target.secrets)}  # fmt: skip
    if isinstance(target, QmpTarget):
        return {"kind": "qmp", "address": target.address, "device": target.device,
                "timeout": target.timeout, "scan": list(target.scan)}  # fmt: skip
    return {"kind": "libvirt", "uri": target.uri, "domain": target.domain,
            "disk": target.disk, "scan": list(target.scan)}  # fmt: skip


def target_from_record(data: object) -> Target:
    """The target ``target_to_record`` wrote; ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError(f"not a job target: {data!r}")
    kind = data.get("kind")
    scan = tuple(str(d) for d in data.get("scan") or ())
    if kind == "qemu-img":
        secrets = tuple(str(s) for s in data.get("secrets") or ())
        return ImageTarget(str(data["image"]), scan, bool(data.get("default_scan", True)), secrets)
    if kind == "qmp":
        device = data.get("device")
        timeout = float(data.get("timeout") or DEFAULT_QMP_TIMEOUT)
        return QmpTarget(str(data["address"]), None if device is None else str(device), timeout,
                         scan)  # fmt: skip
    if kind == "libvirt":
        return LibvirtTarget(str(data["uri"]), str(data["domain"]), str(data["disk"]), scan)
    raise ValueError(f"unknown job target kind {kind!r}")


class Session(Protocol):
    """An engine's connection for the length of one job; it runs one step at a time."""

    outcome: str | None
    """What the job did, in the user's words, when the engine knows better than the plan
    (an active commit that kept its overlay, files libvirt deleted)."""

    def run_step(self, index: int, step: Step, sink: ProgressSink, cancel: CancelToken) -> None:
        """Carry out one step of the plan; raise EngineError (or CancelledError)."""


class Engine(Protocol):
    """What the runner needs from an engine: its plan, its checks, its session, its words."""

    kind: EngineKind
    keeps_cancelled_record: bool
    """Whether a cancelled job leaves work that a re-run completes (offline: base is partly
    written); online, QEMU's cancelled job leaves a consistent chain and nothing to finish."""

    def read_graph(self, target: Target) -> ImageGraph:
        """The graph the target's chain (and its siblings) make."""

    def prepare(self, graph: ImageGraph, target: Target, request: CommitRequest) -> CommitPlan:
        """core.plan with this engine's rules, plus this engine's steps: the immutable plan."""

    def written(self, plan: CommitPlan) -> Sequence[str]:
        """Every image the plan writes or removes (Backchain locks them all)."""

    def preflight(self, plan: CommitPlan, target: Target) -> None:
        """Just before the first write: the chain or live graph still matches the plan."""

    def resume_check(self, plan: CommitPlan, done: int, target: Target) -> None:
        """Before the rest of an interrupted job runs: the files are where it left them."""

    def session(self, plan: CommitPlan, target: Target) -> AbstractContextManager[Session]:
        """Open what the steps need (a QMP connection, a libvirt connection, nothing)."""

    def state_after(self, plan: CommitPlan, done: Sequence[Step], failed: Step | None) -> str:
        """Where every file stands after ``done`` steps (and perhaps part of ``failed``)."""
