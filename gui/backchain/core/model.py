"""The commit request the user makes and the immutable plan that answers it."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from backchain.core.errors import shell_quote
from backchain.core.static_typing import TYPE_CHECKING
from backchain.core.valueclass import field, valueclass

if TYPE_CHECKING:
    from typing import Any


class EngineKind(enum.StrEnum):
    """Which engine runs a plan; the values are what ``plan --json`` prints."""

    QEMU_IMG = "qemu-img"
    QMP = "qmp"
    LIBVIRT = "libvirt"


ENGINES = tuple(EngineKind)


class Operation(enum.StrEnum):
    """The two ways to shorten a chain: write down into base, or copy up into top."""

    COMMIT = "commit"
    PULL = "pull"


class StepKind(enum.StrEnum):
    """What one step of a plan does; the values are what ``plan --json`` and the journal hold."""

    COMMIT = "commit"
    REBASE = "rebase"
    PULL = "pull"
    VERIFY = "verify"
    DELETE = "delete"
    BLOCK_COMMIT = "block-commit"
    BLOCK_STREAM = "block-stream"
    LIBVIRT_STATE = "virDomainGetState"
    LIBVIRT_COMMIT = "virDomainBlockCommit"
    LIBVIRT_REBASE = "virDomainBlockRebase"
    LIBVIRT_ABORT = "virDomainBlockJobAbort"
    LIBVIRT_DEFINE = "virDomainDefineXML"
    LIBVIRT_SNAPSHOT_DELETE = "virDomainSnapshotDelete"


class Phase(enum.StrEnum):
    """The phase a progress report belongs to (the bar's label)."""

    COMMIT = "commit"
    REBASE = "rebase"
    PULL = "pull"
    VERIFY = "verify"
    DELETE = "delete"
    SYNCHRONISING = "synchronising"
    READY = "ready"
    PIVOT = "pivot"
    KEEP_OVERLAY = "keep overlay"
    REPOINT = "re-point"


class OnReady(enum.StrEnum):
    """What an active commit does once base has caught up with top."""

    ASK = "ask"
    PIVOT = "pivot"
    KEEP_OVERLAY = "keep-overlay"


@valueclass(frozen=True)
class CommitRequest:
    """What the user asked for, before it is resolved against a chain (SEMANTICS.md)."""

    image: str
    """The chain to work on: its active layer's path, node name or label."""
    top: str | None = None
    base: str | None = None
    shallow: bool = False
    delete: bool = False
    keep_relative: bool = False
    active: bool = False
    """Online only: the caller knows top is the active layer (libvirt's ACTIVE flag)."""
    rate: int = 0
    """Bandwidth limit in bytes per second; 0 means unlimited."""
    verify: bool = True
    """With DELETE: compare top's view with base before anything is removed."""
    on_ready: OnReady = OnReady.ASK
    engine: EngineKind = EngineKind.QEMU_IMG
    operation: Operation = Operation.COMMIT

    def __post_init__(self) -> None:
        # Accept the enums' plain values too ("qmp"), as the command line and JSON spell them.
        object.__setattr__(self, "engine", EngineKind(self.engine))
        object.__setattr__(self, "operation", Operation(self.operation))
        object.__setattr__(self, "on_ready", OnReady(self.on_ready))


class Role(enum.StrEnum):
    """What a commit does to one image, as the preview colours it."""

    BASE = "base"
    INVALID = "invalid"
    STALE = "stale"
    REBASED = "rebased"
    AT_RISK = "at_risk"
    DELETED = "deleted"
    UNTOUCHED = "untouched"


@valueclass(frozen=True)
class SnapshotView:
    """One internal snapshot of an image, read as a view of its own: the bytes that change."""

    name: str
    bytes: int | None
    exact: bool = True
    """False: ``bytes`` is a lower bound (or, with allocation unknown, the whole view)."""


@valueclass(frozen=True)
class Affected:
    """An image and how many of its bytes would read changed data (None while unknown)."""

    image: str
    bytes: int | None
    exact: bool = True
    """False: ``bytes`` is a lower bound (a running VM's active layer), or the whole virtual
    size when the image's allocation cannot be read."""
    snapshots: tuple[SnapshotView, ...] = ()
    """The image's internal snapshots whose views change too."""


class LostKind(enum.StrEnum):
    """What DELETE destroys besides the file's data."""

    INTERNAL_SNAPSHOT = "internal-snapshot"
    BITMAP = "bitmap"


@valueclass(frozen=True)
class Lost:
    """An internal snapshot or a persistent dirty bitmap held by a layer that DELETE removes."""

    image: str
    kind: LostKind
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LostKind(self.kind))


def affected_json(item: Affected) -> dict[str, Any]:
    """One ``at_risk``, ``invalid`` or ``view_changes`` entry of ``plan --json``."""
    return {
        "image": item.image,
        "bytes": item.bytes,
        "exact": item.exact,
        "snapshots": [{"name": s.name, "bytes": s.bytes, "exact": s.exact} for s in item.snapshots],
    }


@valueclass(frozen=True)
class Rebase:
    """An overlay of top that is re-pointed to base, with the name written in its header."""

    image: str
    backing: str
    backing_name: str


@valueclass(frozen=True)
class Advice:
    """Pull-or-commit advice for one merged layer."""

    image: str
    allocated: int | None
    virtual_size: int
    commit_bytes: int | None
    pull_bytes: int | None

    @property
    def ratio(self) -> float | None:
        """The share of the layer's virtual size that it allocates itself."""
        if self.allocated is None or self.virtual_size <= 0:
            return None
        return self.allocated / self.virtual_size

    @property
    def direction(self) -> str | None:
        """``"commit"`` or ``"pull"``: whichever copies fewer bytes."""
        if self.commit_bytes is None or self.pull_bytes is None:
            return None
        return "commit" if self.commit_bytes <= self.pull_bytes else "pull"


@valueclass(frozen=True)
class Alternative:
    """The other direction for the same shortening: what it would copy and put at risk."""

    operation: Operation
    top: str
    base: str
    """The layer that stays below the merged data; "" when none does (a pull that flattens)."""
    bytes_to_copy: int | None
    at_risk: tuple[Affected, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``"alternative"`` object of ``plan --json``."""
        return {
            "operation": self.operation.value,
            "top": self.top,
            "base": self.base or None,
            "bytes_to_copy": self.bytes_to_copy,
            "at_risk": [{"image": a.image, "bytes": a.bytes} for a in self.at_risk],
        }


@valueclass(frozen=True)
class Step:
    """One exact engine action: a process to run, or a QMP/libvirt call."""

    kind: StepKind
    argv: tuple[str, ...] = ()
    call: Mapping[str, Any] | None = None
    """For QMP: ``{"execute": ..., "arguments": ...}``; for libvirt: the API call."""
    cwd: str | None = None
    target: str = ""
    """The image this step writes or removes."""

    def __post_init__(self) -> None:
        # Accept the kind's plain value too ("commit"), as the JSON of a plan spells it.
        object.__setattr__(self, "kind", StepKind(self.kind))

    def to_json(self) -> list[str] | Mapping[str, Any]:
        """argv as a list, or the call object."""
        return list(self.argv) if self.argv else dict(self.call or {})

    def as_shell(self) -> str:
        """A shell line that does the same, for 'Copy as shell script'."""
        if not self.argv:
            import json

            return "# " + json.dumps(self.to_json())
        line = shell_quote(self.argv)
        return f"(cd {shell_quote([self.cwd])} && {line})" if self.cwd else line


@valueclass(frozen=True)
class CommitPlan:
    """Every consequence of one commit, and the exact steps that carry it out."""

    request: CommitRequest
    engine: EngineKind
    image: str
    chain: tuple[str, ...]
    top: str
    base: str
    merged: tuple[str, ...]
    invalid: tuple[Affected, ...]
    stale: tuple[str, ...]
    rebased: tuple[Rebase, ...]
    at_risk: tuple[Affected, ...]
    deleted: tuple[str, ...]
    bytes_to_copy: int | None
    advice: tuple[Advice, ...]
    steps: tuple[Step, ...]
    active_commit: bool
    """Top is the chain's active layer (online: the job waits in ``ready``)."""
    notes: tuple[str, ...] = field(default=())
    operation: Operation = Operation.COMMIT
    live: bool = False
    """The job runs inside a running VM (QMP, a running libvirt domain): it can pivot."""
    view_changes: tuple[Affected, ...] = ()
    """Top and the images above it (re-pointed to base) whose guest-visible content changes."""
    lost: tuple[Lost, ...] = ()
    base_grows_to: int | None = None
    """Base's new virtual size when top is larger, else None."""
    bytes_to_copy_exact: bool = True
    """False: ``bytes_to_copy`` is a lower bound (a running VM writes top during the job)."""
    scanned: tuple[str, ...] = ()
    """The directories searched for other images on the same layers."""
    alternative: Alternative | None = None
    """The other direction for the same shortening (commit <-> pull), for the advice."""
    deletable: tuple[str, ...] = ()
    """A pull's removed layers that no other image uses any more (DELETE removes these)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", EngineKind(self.engine))
        object.__setattr__(self, "operation", Operation(self.operation))

    @property
    def receiver(self) -> str:
        """The image the data is copied into: base for a commit, top for a pull."""
        return self.top if self.operation is Operation.PULL else self.base

    def roles(self) -> dict[str, Role]:
        """The preview's colour for every image the plan touches; others are untouched."""
        if self.operation is Operation.PULL:
            # A pull changes only top (it receives the data); removed layers stay as they are.
            pulled = {self.top: Role.BASE}
            pulled.update({path: Role.DELETED for path in self.deleted})
            return pulled
        roles: dict[str, Role] = {self.base: Role.BASE}
        for item in self.at_risk:
            roles[item.image] = Role.AT_RISK
        for rebase in self.rebased:
            roles[rebase.image] = Role.REBASED
        for item in self.invalid:
            roles[item.image] = Role.INVALID
        for path in self.stale:
            roles[path] = Role.STALE
        for path in self.deleted:
            roles[path] = Role.DELETED
        return roles

    def role(self, path: str) -> Role:
        """The role of one image."""
        return self.roles().get(path, Role.UNTOUCHED)

    def shell_script(self) -> str:
        """The steps as a POSIX shell script."""
        lines = ["#!/bin/sh", "set -e"]
        lines += [step.as_shell() for step in self.steps]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """The ``plan --json`` object (paths absolute, sizes in bytes)."""
        return {
            "operation": self.operation.value,
            "engine": self.engine.value,
            "image": self.image,
            "chain": list(self.chain),
            "top": self.top,
            "base": self.base or None,
            "merged": list(self.merged),
            "removed": list(self.merged) if self.operation is Operation.PULL else [],
            "invalid": [affected_json(a) for a in self.invalid],
            "stale": list(self.stale),
            "rebased": [{"image": r.image, "backing": r.backing} for r in self.rebased],
            "at_risk": [affected_json(a) for a in self.at_risk],
            "deleted": list(self.deleted),
            "bytes_to_copy": self.bytes_to_copy,
            "bytes_to_copy_exact": self.bytes_to_copy_exact,
            "view_changes": [affected_json(a) for a in self.view_changes],
            "lost": [{"image": x.image, "kind": x.kind.value, "name": x.name} for x in self.lost],
            "base_grows_to": self.base_grows_to,
            "scanned": list(self.scanned),
            "active_commit": self.active_commit,
            "verify": self.request.verify and bool(self.deleted),
            "advice": [
                {
                    "image": a.image,
                    "allocated": a.allocated,
                    "virtual_size": a.virtual_size,
                    "ratio": a.ratio,
                    "commit_bytes": a.commit_bytes,
                    "pull_bytes": a.pull_bytes,
                    "direction": a.direction,
                }
                for a in self.advice
            ],
            "notes": list(self.notes),
            "steps": [step.to_json() for step in self.steps],
            "alternative": None if self.alternative is None else self.alternative.to_json(),
            "deletable": list(self.deletable),
        }
