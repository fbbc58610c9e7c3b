"""Client side of the agent protocol: requests out, events in, over a target Channel.

One reader task parses the agent's JSON lines and routes them: `out`/`gpu`/`log` to callbacks,
`done`/`error` to the future of the request they answer. When the stream ends (the kernel died:
os._exit, a segfault, a dropped connection) every pending request resolves as `died`, so the
session can report it and start a fresh kernel for the next run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from devloop.core.targets.base import Channel, ConnectionLost, TargetError


@dataclass
class ExecResult:
    """How a request ended. `died` means the kernel process is gone (exit_code says how)."""

    ok: bool
    ms: float = 0.0
    exit_code: int | None = None
    error: dict[str, Any] | None = None
    died: bool = False
    lost: bool = False  # the connection dropped rather than the process dying


class KernelDied(Exception):
    pass


@dataclass
class _Pending:
    future: asyncio.Future
    error: dict[str, Any] | None = None


@dataclass
class KernelClient:
    channel: Channel
    on_output: Callable[[str | None, str, str], None]  # (request id, stream, text)
    on_gpu: Callable[[dict], None] = lambda payload: None
    on_log: Callable[[str, str], None] = lambda level, message: None
    ready_info: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _ready: asyncio.Future | None = None
    _reader: asyncio.Task | None = None
    _closed: bool = False
    _lost: bool = False

    async def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start reading and wait for the agent's `ready` event."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._reader = asyncio.create_task(self._read_loop(), name="devloop-kernel-reader")
        try:
            self.ready_info = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            await self.channel.kill()
            raise TargetError(
                f"the devloop agent did not start within {timeout:.0f} s",
                hint="run with -v to see the agent's messages; check that python3 runs in the target",
            ) from None
        return self.ready_info

    @property
    def alive(self) -> bool:
        return not self._closed

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    line = await self.channel.readline()
                except ConnectionLost:
                    self._lost = True
                    break
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.on_log("warning", f"agent wrote a non-protocol line: {line[:200]!r}")
                    continue
                self._dispatch(msg)
        finally:
            self._closed = True
            try:
                self.exit_code = await asyncio.wait_for(self.channel.wait(), 5)
            except Exception:  # noqa: BLE001 - the code is only informative
                self.exit_code = None
            if self._ready is not None and not self._ready.done():
                tail = self.channel.stderr_tail().strip()
                self._ready.set_exception(TargetError(
                    f"the devloop agent exited before it was ready (exit code {self.exit_code})"
                    + (f": {tail.splitlines()[-1]}" if tail else ""),
                    hint="run with -v for the agent's output; the target needs python3 (3.8+)",
                ))
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_result(ExecResult(
                        ok=False, exit_code=self.exit_code, died=True, lost=self._lost,
                        error=pending.error,
                    ))
            self._pending.clear()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "out":
            self.on_output(msg.get("id"), msg.get("stream", "stdout"), msg.get("data", ""))
        elif kind == "done":
            pending = self._pending.pop(str(msg.get("id")), None)
            if pending and not pending.future.done():
                pending.future.set_result(ExecResult(
                    ok=bool(msg.get("ok")), ms=float(msg.get("ms") or 0.0),
                    exit_code=msg.get("exit_code"), error=pending.error,
                ))
        elif kind == "error":
            pending = self._pending.get(str(msg.get("id")))
            if pending is not None:
                pending.error = msg
        elif kind == "gpu":
            self.on_gpu(msg)
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
        elif kind == "log":
            self.on_log(str(msg.get("level", "info")), str(msg.get("message", "")))
        else:
            self.on_log("debug", f"agent event ignored: {msg!r:.200}")

    async def _send(self, payload: Mapping[str, Any]) -> None:
        data = (json.dumps(payload) + "\n").encode()
        try:
            await self.channel.send(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionLost, OSError) as exc:
            if isinstance(exc, ConnectionLost):
                self._lost = True
            raise KernelDied(str(exc)) from exc

    async def _request(self, payload: dict[str, Any], rid: str | None = None) -> ExecResult:
        """Send one request and wait for its reply; a kernel that is gone is a `died` result."""
        if self._closed:
            return ExecResult(ok=False, died=True, exit_code=self.exit_code, lost=self._lost)
        rid = rid if rid is not None else str(next(self._ids))
        payload["id"] = rid
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(fut)
        try:
            await self._send(payload)
        except KernelDied:
            self._pending.pop(rid, None)
            return ExecResult(ok=False, died=True, exit_code=self.exit_code, lost=self._lost)
        return await fut

    def next_id(self) -> str:
        """The id the next request will carry (to tag its output before it arrives)."""
        return str(next(self._ids))

    async def exec(self, code: str, filename: str, first_line: int, rid: str | None = None) -> ExecResult:
        payload: dict[str, Any] = {"op": "exec", "code": code, "filename": filename, "first_line": first_line}
        return await self._request(payload, rid)

    async def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                  rid: str | None = None) -> ExecResult:
        payload: dict[str, Any] = {"op": "run", "argv": list(argv), "env": dict(env or {})}
        return await self._request(payload, rid)

    async def notify(self, op: str, **fields: Any) -> None:
        """Fire-and-forget requests: interrupt, reset, purge, gpu."""
        if self._closed:
            return
        try:
            await self._send({"op": op, **fields})
        except KernelDied:
            pass

    async def shutdown(self, timeout: float = 3.0) -> None:
        """Ask the agent to exit; kill it if it does not."""
        if not self._closed:
            await self.notify("shutdown")
            if self._reader is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._reader), timeout)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    pass
        await self.channel.kill()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
