"""One QMP connection (qemu.qmp), used in one asyncio loop in one thread; errors are typed."""

from __future__ import annotations

import asyncio
import json
import os.path
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError

from backchain.core.errors import EngineError
from backchain.engines.base import DEFAULT_QMP_TIMEOUT

DEFAULT_TIMEOUT = DEFAULT_QMP_TIMEOUT


def parse_address(address: str) -> str | tuple[str, int]:
    """A unix socket path, or ``(host, port)`` for ``host:port``."""
    match = re.fullmatch(r"\[?([^/\[\]]*?)\]?:(\d+)", address.strip())
    if match and not os.path.exists(address):
        return match.group(1) or "localhost", int(match.group(2))
    return address


class QmpSession:
    """One QMP connection, used in one asyncio loop in one thread; raises EngineError."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self.client = QMPClient("backchain")

    async def __aenter__(self) -> QmpSession:
        try:
            await asyncio.wait_for(self.client.connect(parse_address(self.address)), self.timeout)
        except TimeoutError as exc:
            await self._drop()
            raise EngineError(
                f"QEMU at {self.address} did not answer within {self.timeout:g} s "
                "(no QMP greeting); is the VM stopped or hung?"
            ) from exc
        except ConnectError as exc:
            if isinstance(exc.exc, (FileNotFoundError, ConnectionRefusedError)):
                message = f"no QEMU is listening at {self.address}"
            else:
                message = f"cannot connect to QEMU at {self.address}: {exc.exc or exc}"
            raise EngineError(message, stderr=str(exc)) from exc
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._drop()

    async def _drop(self) -> None:
        try:
            await asyncio.wait_for(self.client.disconnect(), 5)
        except (QMPError, OSError, EOFError, TimeoutError):
            # The connection is already gone; its cause was reported by the failed command.
            pass

    def gone(self, doing: str, exc: BaseException) -> EngineError:
        """The error for a connection that closed under us (QEMU exited or crashed)."""
        return EngineError(
            f"the connection to QEMU at {self.address} closed while {doing}: "
            "QEMU exited or crashed",
            stderr=f"{type(exc).__name__}: {exc}",
        )

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run one command; QEMU's refusal, a timeout or a lost connection raise EngineError."""
        sent = json.dumps({"execute": command, "arguments": dict(arguments or {})})
        try:
            return await asyncio.wait_for(
                self.client.execute(command, dict(arguments) if arguments else None), self.timeout
            )
        except ExecuteError as exc:
            raise EngineError(
                f"QEMU refused {command}: {exc.error.error.desc}",
                argv=(sent,),
                stderr=f"{exc.error.error.class_}: {exc.error.error.desc}",
            ) from exc
        except TimeoutError as exc:
            raise EngineError(
                f"QEMU at {self.address} did not answer {command} within {self.timeout:g} s",
                argv=(sent,),
            ) from exc
        except (ExecInterruptedError, QMPError, OSError, EOFError) as exc:
            raise self.gone(f"running {command}", exc) from exc
