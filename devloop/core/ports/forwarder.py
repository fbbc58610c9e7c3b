"""The forwards of one session: an asyncio listener per forward on this machine, and per local
connection one stream to the port inside the target.

Lifetime: `bind()` before the target starts (a busy local port fails the start at once, with the
process that holds it and a free port to use instead); `start(target)` once the target is up
(connections accepted before then wait for it); `close()` ends every listener, connection and
relay. Listeners bind 127.0.0.1 unless `[ports] bind` says otherwise.

Which way a connection goes is the target's declared ability: `Target.native_ports` (SSH: a
paramiko `direct-tcpip` channel on the session's transport) or else the agent's `connect --mux`
relay over `Target.spawn` (docker, ssh+docker, kubernetes, local): one process in the target,
started with the forwards, carries every connection (mux.py). A dropped link to the target is not the forward's end: the session
reattaches, and the next connection goes over the new link.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from devloop.core.ports.busy_port import busy_message
from devloop.core.ports.spec import ForwardSpec
from devloop.core.ports.mux import Mux
from devloop.core.ports.stream import CHUNK, PortRefused, PortStream
from devloop.core.targets.base import TargetError

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.targets.base import Target

RETRY_S = 15.0  # a connection made while the link to the target is down waits this long for it


class PortBusy(TargetError):
    """A local port of a forward is taken: the message names who holds it and a free one."""


@dataclass
class ForwardState:
    """What the ports line shows for one forward."""

    spec: ForwardSpec
    bind: str
    via: str = ""
    state: str = "starting"  # starting | listening | closed
    open: int = 0  # connections open now
    total: int = 0
    refused: int = 0
    bytes_in: int = 0  # from the target to the local side
    bytes_out: int = 0
    last_error: str = ""

    @property
    def url(self) -> str:
        host = "localhost" if self.bind in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost") else self.bind
        return f"http://{host}:{self.spec.local}/"


@dataclass
class _Forward:
    state: ForwardState
    server: asyncio.AbstractServer | None = None
    conns: set = field(default_factory=set)


class Forwarder:
    def __init__(self, specs: tuple[ForwardSpec, ...], bind: str = "127.0.0.1",
                 on_state: Callable[[ForwardState], None] | None = None,
                 log: Callable[[str, str], None] | None = None) -> None:
        self.bind_address = bind
        self._forwards = [_Forward(ForwardState(spec, bind)) for spec in specs]
        self._on_state = on_state or (lambda state: None)
        self._log = log or (lambda message, level="debug": None)
        self._target: Target | None = None
        self._mux: Mux | None = None  # the agent relay's channel (targets without native_ports)
        self._ready = asyncio.Event()
        self._closed = False
        self._streams: set[PortStream] = set()

    @property
    def states(self) -> tuple[ForwardState, ...]:
        return tuple(f.state for f in self._forwards)

    def __bool__(self) -> bool:
        return bool(self._forwards)

    # ------------------------------------------------------------------ lifetime
    async def bind(self) -> None:
        """Listen on every local port now; PortBusy (nothing left listening) if one is taken."""
        taken = {f.state.spec.local for f in self._forwards}
        for fwd in self._forwards:
            spec = fwd.state.spec
            try:
                fwd.server = await asyncio.start_server(
                    lambda r, w, fwd=fwd: self._serve(fwd, r, w), self.bind_address, spec.local,
                    reuse_address=True, limit=CHUNK)
            except OSError as exc:
                await self.close(quiet=True)
                if exc.errno == errno.EADDRINUSE:
                    message, fix = busy_message(spec.local, self.bind_address, spec.remote_label, taken)
                    raise PortBusy(message, hint=fix) from None
                raise PortBusy(f"cannot forward {spec.remote_label}: cannot listen on "
                               f"{self.bind_address}:{spec.local}: {exc.strerror or exc}",
                               hint="pick another local port (LOCAL:REMOTE), or check [ports] bind") from None
            fwd.state.state = "listening"

    def start(self, target: "Target") -> None:
        """The target is up: connections go through to it from now on."""
        self._target = target
        via = "ssh direct-tcpip" if target.native_ports else "agent relay"
        if self._forwards and not target.native_ports:
            self._mux = Mux(target)
            self._mux.warm()
        for fwd in self._forwards:
            fwd.state.via = via
        self._ready.set()
        for fwd in self._forwards:
            self._on_state(fwd.state)

    async def close(self, quiet: bool = False) -> None:
        """Every listener, connection and relay ends (nothing is left running in the target
        either). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for fwd in self._forwards:
            if fwd.server is not None:
                fwd.server.close()
        conns = [t for fwd in self._forwards for t in fwd.conns]
        for task in conns:
            task.cancel()
        if conns:
            await asyncio.gather(*conns, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in list(self._streams)), return_exceptions=True)
        if self._mux is not None:
            await self._mux.close()
        for fwd in self._forwards:
            if fwd.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fwd.server.wait_closed(), 5)
            was = fwd.state.state
            fwd.state.state = "closed"
            if not quiet and was != "closed":
                self._on_state(fwd.state)

    def bytes_of(self, state: ForwardState) -> tuple[int, int]:
        """(from the target, to the target) bytes of a forward, the open connections included."""
        live = [s for s in self._streams if getattr(s, "owner", None) is state]
        return (state.bytes_in + sum(s.received for s in live),
                state.bytes_out + sum(s.sent for s in live))

    # ------------------------------------------------------------------ a connection
    async def _open(self, fwd: _Forward) -> PortStream:
        """A stream to the forward's remote port; PortRefused when nothing listens there."""
        assert self._target is not None
        spec = fwd.state.spec
        if self._mux is None:
            return await self._target.open_port(spec.host, spec.remote)
        return await self._mux.open(spec.host, spec.remote)

    async def _open_retrying(self, fwd: _Forward) -> PortStream:
        """A dropped link to the target is being re-established by the session (the target says
        it is lost, or not started while it starts again): wait for it, RETRY_S at most."""
        deadline = time.monotonic() + RETRY_S
        delay = 0.2
        while True:
            try:
                return await self._open(fwd)
            except PortRefused:
                raise
            except (TargetError, OSError) as exc:
                if time.monotonic() + delay > deadline or self._closed:
                    what = exc.message if isinstance(exc, TargetError) else str(exc)
                    raise TargetError(f"the target cannot be reached: {what}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _serve(self, fwd: _Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        fwd.conns.add(task)
        state = fwd.state
        state.open += 1
        state.total += 1
        stream: PortStream | None = None
        try:
            with contextlib.suppress(OSError):
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._ready.wait()
            try:
                stream = await self._open_retrying(fwd)
            except PortRefused as exc:
                state.refused += 1
                state.last_error = f"{state.spec.remote_label}: {exc.message}"
                self._log(f"forward {state.spec.text}: nothing listens on {state.spec.remote_label} "
                          f"({exc.message}); the connection was closed", "debug")
                return
            except TargetError as exc:
                state.last_error = exc.message
                self._log(f"forward {state.spec.text}: {exc.message}", "warning")
                return
            stream.owner = state
            self._streams.add(stream)
            await self._pipe(state, reader, writer, stream)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            state.open -= 1
            fwd.conns.discard(task)
            writer.close()
            if stream is not None:
                state.bytes_in += stream.received
                state.bytes_out += stream.sent
                stream.owner = None
                if not self._closed:  # the relay finishes in the background; close() ends it
                    asyncio.ensure_future(self._finish(stream))
                else:
                    self._streams.discard(stream)
                    await stream.close()

    async def _finish(self, stream: PortStream) -> None:
        try:
            await stream.close()
        finally:
            self._streams.discard(stream)

    async def _pipe(self, state: ForwardState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    stream: PortStream) -> None:
        async def up() -> None:
            try:
                while True:
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    await stream.write(data)
                await stream.write_eof()
            except (ConnectionError, OSError, TargetError):
                pass

        uplink = asyncio.ensure_future(up())
        try:
            while True:
                data = await stream.read(CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
        finally:
            uplink.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await uplink



def for_session(config: object, profile: object, extra: tuple[str, ...], emit: Callable[[object], None]) -> Forwarder:
    """The forwards of a session: [ports].forward, then the profile's `forward:`, then the
    command line's `--forward` (a later one for the same local port replaces an earlier one).
    Their states go out as `forward` events; a bind beyond loopback is warned about."""
    from devloop.core import events as ev
    from devloop.core.ports.spec import merge

    ports = getattr(config, "ports", None)
    specs = merge(getattr(ports, "forward", ()) or (), getattr(profile, "forward", ()) or (), extra or ())
    bind = getattr(ports, "bind", "127.0.0.1") or "127.0.0.1"

    def log(message: str, level: str = "debug") -> None:
        emit(ev.Diagnostic(level=level, message=message))

    def on_state(state: ForwardState) -> None:
        emit(ev.PortForward(local=state.spec.local, remote=state.spec.remote, state=state.state,
                            bind=state.bind, host=state.spec.host, via=state.via))

    if specs and bind not in ("127.0.0.1", "::1", "localhost"):
        log(f"[ports] bind = {bind!r}: the forwarded ports ({', '.join(str(s.local) for s in specs)}) "
            "are open to every machine that reaches this one, with no login (TensorBoard, Jupyter "
            "without a token...); remove `bind` to keep them on 127.0.0.1", "warning")
    return Forwarder(specs, bind, on_state=on_state, log=log)
