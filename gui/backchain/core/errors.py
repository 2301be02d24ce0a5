"""Typed errors: a refused plan, a bad image, and a failed external command."""

from __future__ import annotations

from collections.abc import Sequence


class BackchainError(Exception):
    """Base class of every error Backchain reports to the user."""

    @property
    def summary(self) -> str:
        """One line for the user, naming the file and the cause."""
        return str(self)

    @property
    def details(self) -> str:
        """Everything else that helps: the command, its exit status, its output."""
        return ""


class PlanError(BackchainError):
    """A commit request that is refused before anything is written."""


class ImageError(BackchainError):
    """An image that cannot be read or trusted: missing, corrupt, unsafe backing, a loop."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class EngineError(BackchainError):
    """An external command (qemu-img, QMP, libvirt) that failed, with what it said."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
        state: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.state = state

    @property
    def details(self) -> str:
        parts = []
        if self.argv:
            parts.append("command: " + " ".join(_quote(a) for a in self.argv))
        if self.returncode is not None:
            parts.append(f"exit status: {self.returncode}")
        if self.stderr:
            parts.append("output:\n" + self.stderr.rstrip())
        if self.state:
            parts.append("state of the files:\n" + self.state.rstrip())
        return "\n".join(parts)


class CancelledError(EngineError):
    """The user cancelled a running job; ``state`` says where each file stands."""


def _quote(arg: str) -> str:
    safe = arg and all(c.isalnum() or c in "-_./=:,@%+" for c in arg)
    return arg if safe else "'" + arg.replace("'", "'\"'\"'") + "'"


def shell_quote(argv: Sequence[str]) -> str:
    """Render an argv list as one POSIX shell line."""
    return " ".join(_quote(a) for a in argv)
