"""Client side of the agent protocol: requests out, events in, over a target Channel.

One reader task parses the agent's JSON lines and routes them: `out`/`gpu`/`log` to callbacks,
`done`/`error` to the future of the request they answer. When the stream ends (the kernel died:
os._exit, a segfault, a dropped connection) every pending request resolves as `died`, so the
session can report it and start a fresh kernel for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from devloop.agent import wire
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
    checked: bool = True  # False: the exec's precheck failed (a syntax error), its cell never started


class KernelDied(Exception):
    pass


@dataclass
class _Pending:
    future: asyncio.Future
    error: dict[str, Any] | None = None
    on_checked: Callable[[], None] | None = None  # an exec's precheck passed: the cell starts


@dataclass
class KernelClient:
    channel: Channel | None
    on_output: Callable[[str | None, str, str], None]  # (request id, stream, text)
    on_gpu: Callable[[dict], None] = lambda payload: None
    on_log: Callable[[str, str], None] = lambda level, message: None
    on_input: Callable[[dict], None] = lambda request: None  # a cell waits in input() (not replayed)
    on_display: Callable[[dict], None] = lambda payload: None  # figures, images, values
    ready_info: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _ready: asyncio.Future | None = None
    _reader: asyncio.Task | None = None
    _closed: bool = False
    _lost: bool = False
    fresh: bool = True  # a plain kernel is always new; a session client may attach to an old one
    replaying: bool = False  # the event being dispatched arrived while nobody was attached

    def where_of(self, rid: str | None) -> tuple[str, int] | None:
        """(file, cell) the kernel said request `rid` runs (a request another front end sent)."""
        return None

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
                    checked=msg.get("checked", True) is not False,
                ))
        elif kind == wire.EV_CHECKED:  # before the cell's first `out`: in order on the stream
            pending = self._pending.get(str(msg.get("id")))
            if pending is not None and pending.on_checked is not None:
                pending.on_checked()
        elif kind == "error":
            pending = self._pending.get(str(msg.get("id")))
            if pending is not None:
                pending.error = msg
        elif kind == "gpu":
            self.on_gpu(msg)
        elif kind == "display":
            self.on_display(msg)
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
        elif kind == "log":
            self.on_log(str(msg.get("level", "info")), str(msg.get("message", "")))
        elif kind == wire.EV_INPUT:
            if not msg.get("replayed"):  # asked while nobody was here: the ready's `input` says
                self.on_input(msg)       # whether it still waits (an answered one is not asked)
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

    async def _request(self, payload: dict[str, Any], rid: str | None = None,
                       on_checked: Callable[[], None] | None = None) -> ExecResult:
        """Send one request and wait for its reply; a kernel that is gone is a `died` result."""
        if self._closed:
            return ExecResult(ok=False, died=True, exit_code=self.exit_code, lost=self._lost)
        rid = rid if rid is not None else str(next(self._ids))
        payload["id"] = rid
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(fut, on_checked=on_checked)
        try:
            await self._send(payload)
        except KernelDied:
            self._pending.pop(rid, None)
            return ExecResult(ok=False, died=True, exit_code=self.exit_code, lost=self._lost)
        return await fut

    def next_id(self) -> str:
        """The id the next request will carry (to tag its output before it arrives)."""
        return str(next(self._ids))

    async def exec(self, code: str, filename: str, first_line: int, rid: str | None = None,
                   tag: Mapping[str, Any] | None = None, argv: Sequence[str] | None = None,
                   precheck: Mapping[str, Any] | None = None,
                   on_checked: Callable[[], None] | None = None) -> ExecResult:
        """Run a cell. `tag` ({file, cell, hash}) lets the kernel remember how the cell ended,
        for a front end that attaches later; `argv`: the file's sys.argv (set when it changed).
        `precheck` ({cells: [{code, filename, first_line}], forget: [names]}): a pass's check,
        done first in the same request; when it passes, `on_checked()` runs before the cell's
        output arrives; when it fails the result has `checked` False and the syntax error."""
        payload: dict[str, Any] = {"op": "exec", "code": code, "filename": filename, "first_line": first_line}
        if tag:
            payload["tag"] = dict(tag)
        if argv is not None:
            payload["argv"] = [str(a) for a in argv]
        if precheck is not None:
            payload["precheck"] = {"cells": [dict(c) for c in precheck.get("cells", ())],
                                   "forget": sorted(precheck.get("forget", ()))}
        return await self._request(payload, rid, on_checked)

    async def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                  rid: str | None = None, tag: Mapping[str, Any] | None = None) -> ExecResult:
        payload: dict[str, Any] = {"op": "run", "argv": list(argv), "env": dict(env or {})}
        if tag:
            payload["tag"] = dict(tag)
        return await self._request(payload, rid)

    async def answer_input(self, n: int, text: str | None, reason: str = "") -> None:
        """The line for question `n` of the kernel (None: end of input, `reason` says why)."""
        if text is None:
            await self.notify(wire.OP_INPUT_REPLY, n=n, eof=True, reason=reason)
        else:
            await self.notify(wire.OP_INPUT_REPLY, n=n, value=text)

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


ACK_EVERY_S = 0.2
CONNECT_TIMEOUT_S = 60.0
START_TRIES = 3  # one try at opening a relay channel (a target restart included)


class SessionRefused(TargetError):
    """The session kernel refused this front end (wrong secret) or runs another devloop version."""


@dataclass
class SessionClient(KernelClient):
    """A session kernel: it lives on the target, this client only attaches to it.

    `connect(start)` opens a relay channel (the agent's `attach` mode over the target's exec
    channel; `start`: start a kernel when none is there). A link that drops without a word from
    the relay is a *detach*, not a death: the client attaches again (backing off, for up to
    `reattach_for` seconds) with the last event seq it saw, so what the kernel said meanwhile is
    replayed once, and pending requests resolve from that replay; a request the kernel never
    received is sent again. Only the relay's `kernel_gone` / `no_session` (or the kernel's
    `bye`) mean the kernel is gone, and then `exit` says how it ended."""

    connect: Callable[[bool], Any] | None = None
    secret: str = ""
    start_settings: dict[str, Any] = field(default_factory=dict)
    on_link: Callable[[str, str], None] = lambda state, message: None
    on_reattached: Callable[[dict], None] = lambda ready: None
    reattach_for: float = 300.0
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    fresh: bool = False  # the relay started this kernel (nothing ran in it yet)
    last_seq: int = 0
    end_reason: str | None = None  # died | bye | taken_over | refused | no_session | lost | detached
    end_info: dict[str, Any] = field(default_factory=dict)
    _requests: dict[str, dict] = field(default_factory=dict)  # rid -> payload, until done
    _queued: list[dict] = field(default_factory=list)  # notifications made while unlinked
    _linked: bool = False
    _closing: bool = False
    _ack_sent: int = 0
    _ack_timer: Any = None
    _where: dict[str, tuple[str, int]] = field(default_factory=dict)  # rid -> (file, cell)

    def where_of(self, rid: str | None) -> tuple[str, int] | None:
        return self._where.get(rid or "")

    def _schedule_ack(self) -> None:
        """Acknowledge what arrived, at most every ACK_EVERY_S: a front end that dies loses
        nothing the kernel wrote (what it never acknowledged is replayed to the next one)."""
        if self._ack_timer is None and self._linked and not self._closed:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_EVERY_S, self._fire_ack)

    def _fire_ack(self) -> None:
        self._ack_timer = None
        if self.last_seq > self._ack_sent and self._linked and not self._closed:
            self._ack_sent = self.last_seq
            asyncio.get_running_loop().create_task(self._send_quietly({"op": "ack", "seq": self.last_seq}))

    async def _send_quietly(self, payload: dict) -> None:
        with contextlib.suppress(KernelDied):
            await self._send(payload)

    def next_id(self) -> str:
        return f"{self.client_id}-{next(self._ids)}"

    async def start(self, timeout: float = 60.0, allow_start: bool = True) -> dict[str, Any]:
        """Open a relay and wait for the kernel's `ready`. A try whose channel hangs (seen with
        Kubernetes exec streams under load) is given up after a third of `timeout` and made
        again: the relay attaches to the kernel a hung try may have started."""
        assert self.connect is not None
        per_try = max(timeout / START_TRIES, 15.0)
        for attempt in range(1, START_TRIES + 1):
            self._ready = asyncio.get_running_loop().create_future()
            self._closed, self.end_reason, self.end_info = False, None, {}
            if attempt > 1:
                self.on_link("starting", f"the session kernel did not answer within {per_try:.0f} s "
                                         f"(try {attempt - 1} of {START_TRIES}): trying again on a new channel")
            try:
                self.channel = await asyncio.wait_for(self.connect(allow_start), per_try)
                await self.channel.send(self._hello(None, allow_start))
            except asyncio.TimeoutError:
                continue
            self._reader = asyncio.create_task(self._session_loop(), name="devloop-session-reader")
            try:
                self.ready_info = await asyncio.wait_for(asyncio.shield(self._ready), per_try)
                return self.ready_info
            except asyncio.TimeoutError:
                self._reader.cancel()
                with contextlib.suppress(BaseException):
                    await self._reader
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.channel.kill(), 10)
                if self._ready.done() and not self._ready.cancelled():
                    self._ready.exception()  # retrieved: the next try reports, not this one
        raise TargetError(f"the devloop session kernel did not answer within {START_TRIES} tries of "
                          f"{per_try:.0f} s", hint="run with -v to see the agent's messages")

    def _hello(self, since: int | None, allow_start: bool) -> bytes:
        hello: dict[str, Any] = {"op": wire.OP_HELLO, "secret": self.secret, "since": since,
                                 "client": self.client_id}
        if allow_start:
            hello["start"] = dict(self.start_settings)
        return (json.dumps(hello) + "\n").encode()

    # ------------------------------------------------------------------ reading
    async def _session_loop(self) -> None:
        try:
            while True:
                await self._read_channel()
                if self.end_reason is None and not self._closing and self._ready is not None \
                        and self._ready.done() and not self._ready.exception():
                    self._linked = False
                    if await self._reattach():
                        continue
                    self.end_reason = self.end_reason or "lost"
                break
        finally:
            self._closed = True
            self._linked = False
            self._lost = self.end_reason in ("lost", None) and not self._closing
            code = self.end_info.get("exit_code") if isinstance(self.end_info, dict) else None
            self.exit_code = code if isinstance(code, int) else None
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(self._start_error())
            for rid, pending in list(self._pending.items()):
                if not pending.future.done():
                    pending.future.set_result(ExecResult(
                        ok=False, exit_code=self.exit_code,
                        died=self.end_reason not in ("detached", "taken_over"),
                        lost=self._lost, error=pending.error))
            self._pending.clear()
            if self.end_reason == "taken_over":
                self.on_link("taken_over", str(self.end_info.get("reason", "")))

    def _start_error(self) -> TargetError:
        reason, info = self.end_reason, self.end_info or {}
        if reason == "refused":
            return SessionRefused(f"the session kernel refused this front end: {info.get('reason', '')}",
                                  hint="`devloop stop -p PROFILE` ends that session; then start again")
        if reason == "no_session":
            return TargetError("no session kernel is running there")
        tail = self.channel.stderr_tail().strip() if self.channel is not None else ""
        message = info.get("message") or (tail.splitlines()[-1] if tail else "")
        return TargetError("the devloop session kernel did not start" + (f": {message}" if message else ""),
                           hint="run with -v for the agent's output; the target needs python3 (3.8+)")

    async def _read_channel(self) -> None:
        while True:
            try:
                line = await self.channel.readline()
            except ConnectionLost:
                return
            if not line:
                return
            try:
                msg = json.loads(line)
            except ValueError:
                self.on_log("warning", f"agent wrote a non-protocol line: {line[:200]!r}")
                continue
            if isinstance(msg, dict):
                self._dispatch(msg)
            if self.end_reason is not None:
                return

    def _dispatch(self, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if isinstance(seq, int) and seq > self.last_seq:
            self.last_seq = seq
            self._schedule_ack()
        kind = msg.get("type")
        if kind in (wire.EV_OUT, "display") and isinstance(msg.get("cell"), list) and len(msg["cell"]) == 2:
            if len(self._where) > 256:
                self._where.clear()
            with contextlib.suppress(TypeError, ValueError):
                self._where[str(msg.get("id"))] = (str(msg["cell"][0]), int(msg["cell"][1]))
        if kind == wire.EV_RELAY:
            state = msg.get("state")
            if state == "started":
                self.fresh = True
            elif state == "attached":
                pass
            elif state in ("kernel_gone", "no_session"):
                self.end_reason = "died" if state == "kernel_gone" else "no_session"
                self.end_info = dict(msg.get("exit") or {})
                if msg.get("log"):
                    self.end_info["log"] = msg["log"]
            else:  # failed
                self.end_reason = "failed"
                self.end_info = {"message": msg.get("message", "")}
            return
        if kind == wire.EV_REFUSED:
            self.end_reason, self.end_info = "refused", {"reason": msg.get("reason", "")}
            return
        if kind == wire.EV_DETACHED:
            self.end_reason, self.end_info = "taken_over", {"reason": msg.get("reason", "")}
            return
        if kind == wire.EV_BYE:
            self.end_reason, self.end_info = "bye", {"reason": msg.get("reason", ""), "exit_code": 0}
            return
        if kind == wire.EV_READY:
            self._linked = True
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)
            else:
                self.ready_info = msg
                self._after_reattach(msg)
            return
        if kind == wire.EV_DONE:
            self._requests.pop(str(msg.get("id")), None)
        self.replaying = bool(msg.get("replayed"))
        try:
            super()._dispatch(msg)
        finally:
            self.replaying = False

    def _after_reattach(self, ready: dict[str, Any]) -> None:
        received = set(map(str, ready.get("received") or ()))
        resend = [payload for rid, payload in self._requests.items() if rid not in received]
        queued, self._queued = self._queued, []
        asyncio.get_running_loop().create_task(self._resend(resend + queued))
        self.on_reattached(ready)

    async def _resend(self, payloads: list[dict]) -> None:
        for payload in payloads:
            with contextlib.suppress(KernelDied):
                await self._send(payload)

    async def _reattach(self) -> bool:
        """Attach again after the link dropped; True when a relay answered (the kernel may still
        turn out to be gone: the relay then says so and the loop ends)."""
        self.on_link("lost", "the connection to the target dropped; the kernel goes on there -- reattaching")
        deadline = time.monotonic() + self.reattach_for
        delay = 0.2
        attempt = 0
        while not self._closing:
            attempt += 1
            with contextlib.suppress(Exception):  # the old channel: bounded, it may hang with its link
                await asyncio.wait_for(self.channel.kill(), 10)
            try:  # bounded: a target API that hangs is one more failed try, not a stuck reattach
                self.channel = await asyncio.wait_for(self.connect(False), CONNECT_TIMEOUT_S)
                await self.channel.send(self._hello(self.last_seq, False))
                self.on_link("reattaching", f"reattaching (try {attempt})")
                return True
            except (TargetError, OSError, asyncio.TimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    self.end_info = {"message": str(exc)}
                    return False
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.on_link("reattaching", f"reattaching: try {attempt} failed ({reason}); trying again")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return False

    # ------------------------------------------------------------------ requests
    async def _request(self, payload: dict[str, Any], rid: str | None = None,
                       on_checked: Callable[[], None] | None = None) -> ExecResult:
        if self._closed:
            return ExecResult(ok=False, died=True, exit_code=self.exit_code, lost=self._lost)
        rid = rid if rid is not None else self.next_id()
        payload["id"] = rid
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(fut, on_checked=on_checked)
        self._requests[rid] = payload
        if self._linked:
            with contextlib.suppress(KernelDied):  # a dropped link resends it after reattaching
                await self._send(payload)
        return await fut

    async def notify(self, op: str, **fields: Any) -> None:
        if self._closed:
            return
        payload = {"op": op, **fields}
        if not self._linked:
            if op != wire.OP_INTERRUPT:
                self._queued.append(payload)
            return
        try:
            await self._send(payload)
        except KernelDied:
            if op != wire.OP_INTERRUPT:
                self._queued.append(payload)

    def adopt_running(self, rid: str) -> asyncio.Future:
        """A future for a request another front end sent (it runs now): its `done` ends it."""
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Pending(fut)
        return fut

    async def detach(self) -> None:
        """Leave the kernel running on the target; this client ends."""
        self._closing = True
        said = False
        if not self._closed and self._linked:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send({"op": "ack", "seq": self.last_seq}), 2)
                await asyncio.wait_for(self._send({"op": wire.OP_DETACH}), 2)
                said = True
        self.end_reason = self.end_reason or "detached"
        if said and self._reader is not None:
            # the relay is a process between us and the kernel: killed now, it could drop the
            # ack and the detach unread (the kernel would replay what we had already shown).
            # The kernel closes its end on `detach`, and then the relay ends by itself.
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 2)
        with contextlib.suppress(Exception):
            await self.channel.kill()
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 3)
            if not self._reader.done():
                self._reader.cancel()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """End the session kernel itself (and what it started); this client ends."""
        self._closing = True
        if not self._closed:
            await self.notify(wire.OP_SHUTDOWN)
            if self._reader is not None:
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        with contextlib.suppress(Exception):
            await self.channel.kill()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
