"""The front end's side of the agent's `connect --mux`: many forwarded connections over one exec
channel into the target (the frames are described in devloop/agent/portrelay.py).

One channel per session's forwards, started with the forwards (the first connection does not
wait for a process to start in the target, and none after it does: a new connection costs one
round trip over a channel that is already open -- docker exec and kubernetes exec take 60-300
ms to start a process). When the channel ends (the link to the target dropped), its connections
end, and the next connection starts a new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import TYPE_CHECKING

from devloop.core.ports.stream import PortRefused, PortStream
from devloop.core.targets.base import ConnectionLost, TargetError

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.targets.base import Channel, Target

NOP, OPEN, OPENED, REFUSED, DATA, EOF, CLOSE, ACK = 0, 1, 2, 3, 4, 5, 6, 7
WINDOW = 4 * 1024 * 1024  # as the agent's
FRAME = 128 * 1024
ACK_EVERY = 256 * 1024
KEEPALIVE_S = 0.5
HEAD = struct.Struct(">BII")


class MuxStream(PortStream):
    def __init__(self, mux: "Mux", sid: int) -> None:
        self.mux = mux
        self.sid = sid
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._eof = False
        self._wake = asyncio.Event()
        self._credit = WINDOW  # DATA bytes we may still send
        self._credit_wake = asyncio.Event()
        self._unacked = 0  # bytes read here and not yet acknowledged to the agent
        self._closed = False
        self._gone = False  # the agent closed it, or the channel ended

    # -- from the mux's reader
    def _on_frame(self, op: int, payload: bytes) -> None:
        if op == OPENED:
            if not self.opened.done():
                self.opened.set_result(None)
        elif op == REFUSED:
            if not self.opened.done():
                self.opened.set_exception(PortRefused(payload.decode("utf-8", "replace") or "refused"))
            self._end()
        elif op == DATA:
            self._buf += payload
            self._wake.set()
        elif op == EOF:
            self._eof = True
            self._wake.set()
        elif op == ACK:
            self._credit += struct.unpack(">I", payload)[0]
            self._credit_wake.set()
        elif op == CLOSE:
            self._end()

    def _end(self) -> None:
        self._gone = self._eof = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionLost("the port relay in the target ended"))
        self._wake.set()
        self._credit_wake.set()

    # -- PortStream
    async def read(self, n: int = FRAME) -> bytes:
        data = await self._take(n)
        if not data:
            return data
        self._unacked += len(data)
        if self._unacked >= ACK_EVERY or not self._buf:
            count, self._unacked = self._unacked, 0
            if not self._gone:
                await self.mux.send(ACK, self.sid, struct.pack(">I", count))
        return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            while self._credit <= 0 and not self._gone:
                self._credit_wake.clear()
                await self._credit_wake.wait()
            if self._gone:
                raise ConnectionResetError("the remote side of the forwarded connection closed")
            n = min(len(view), self._credit, FRAME)
            self._credit -= n
            await self.mux.send(DATA, self.sid, bytes(view[:n]))
            self.sent += n
            view = view[n:]

    async def write_eof(self) -> None:
        if not self._gone:
            await self.mux.send(EOF, self.sid)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.mux.streams.pop(self.sid, None)
        if not self._gone:
            self._gone = True
            with contextlib.suppress(Exception):
                await self.mux.send(CLOSE, self.sid)


class Mux:
    """One `connect --mux` channel and the connections over it."""

    def __init__(self, target: "Target") -> None:
        self.target = target
        self.streams: dict[int, MuxStream] = {}
        self._channel: Channel | None = None
        self._reader: asyncio.Task | None = None
        self._starting: asyncio.Task | None = None
        self._send_lock = asyncio.Lock()
        self._next = 0
        self._last_rx = 0.0  # loop time of the last bytes from the agent
        self._keeper: asyncio.Task | None = None
        self._closed = False

    async def _ensure(self) -> "Channel":
        if self._closed:
            raise TargetError("the forward is closed")
        if self._channel is not None and self._reader is not None and not self._reader.done():
            return self._channel
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> "Channel":
        channel = await self.target.spawn(self.target.agent_argv("connect", "--mux"))
        if self._closed:
            with contextlib.suppress(Exception):
                await channel.kill()
            raise TargetError("the forward is closed")
        self._channel = channel
        self._reader = asyncio.ensure_future(self._read(channel))
        self._keeper = asyncio.ensure_future(self._keepalive(channel))
        return channel

    def warm(self) -> None:
        """Start the channel now, so the first connection finds it open."""
        task = asyncio.ensure_future(self._ensure())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _read(self, channel: "Channel") -> None:
        buf = bytearray()
        try:
            while True:
                data = await channel.read(1 << 20)
                if not data:
                    break
                self._last_rx = asyncio.get_running_loop().time()
                buf += data
                while len(buf) >= HEAD.size:
                    op, sid, size = HEAD.unpack_from(buf)
                    if len(buf) < HEAD.size + size:
                        break
                    payload = bytes(buf[HEAD.size:HEAD.size + size])
                    del buf[:HEAD.size + size]
                    stream = self.streams.get(sid)
                    if stream is not None:
                        stream._on_frame(op, payload)
        except (ConnectionLost, OSError):
            pass
        finally:
            streams, self.streams = list(self.streams.values()), {}
            for stream in streams:
                stream._end()
            if self._channel is channel:
                self._channel = None

    async def send(self, op: int, sid: int, payload: bytes = b"") -> None:
        channel = self._channel
        if channel is None:
            raise ConnectionResetError("the port relay channel ended")
        async with self._send_lock:
            await channel.send(HEAD.pack(op, sid, len(payload)) + payload)

    async def _keepalive(self, channel: "Channel") -> None:
        """While connections are open and nothing came for a while, an empty frame. The
        Kubernetes exec path was seen to stall a download at full window until the next stdin
        message came (bench_ports.py: 1 in ~3 downloads of 200 MB); this message unsticks it.
        The agent ignores stream 0."""
        loop = asyncio.get_running_loop()
        while self._channel is channel:
            await asyncio.sleep(KEEPALIVE_S)
            if self.streams and loop.time() - self._last_rx >= KEEPALIVE_S:
                with contextlib.suppress(Exception):
                    await self.send(NOP, 0)

    async def open(self, host: str, port: int) -> MuxStream:
        """A connection to host:port in the target; PortRefused when nothing listens there."""
        await self._ensure()
        self._next += 1
        stream = MuxStream(self, self._next)
        self.streams[stream.sid] = stream
        try:
            await self.send(OPEN, stream.sid, f"{host} {port}".encode())
            await stream.opened
        except BaseException:
            self.streams.pop(stream.sid, None)
            raise
        return stream

    async def close(self) -> None:
        """Every connection and the channel end (the agent closes its sockets at our EOF)."""
        self._closed = True
        channel, self._channel = self._channel, None
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(BaseException):
                channel = await asyncio.wait_for(asyncio.shield(self._starting), 15)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close_stdin()
            try:
                await asyncio.wait_for(channel.wait(), 3)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - still there: killed
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.kill(), 15)
        if self._keeper is not None:
            self._keeper.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
