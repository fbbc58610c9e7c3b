"""A byte stream to a port inside the target: what one forwarded connection talks to.

Two kinds:
- `mux.MuxStream`: one connection over the agent's `connect --mux` relay on the target's own
  exec channel (`Target.spawn`): works on every target, also a container with no network and a
  pod with no Service.
- `ThreadStream`: a blocking socket-like object (a paramiko `direct-tcpip` channel) pumped by
  two threads, with bounded buffers both ways (a slow local client holds the remote window, it
  never fills memory).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from typing import Any

from devloop.core.targets.base import TargetError

CHUNK = 256 * 1024
BUFFERED = 4 * 1024 * 1024  # per direction of a ThreadStream


class PortRefused(TargetError):
    """Nothing listens on the remote port (yet): the local connection is closed, the forward stays."""


class PortStream(abc.ABC):
    """One connection to the remote port."""

    #: bytes each way, for the ports line
    sent = 0
    received = 0

    # what a stream fed by a reader (a thread, the mux) keeps: bytes that arrived, their end,
    # and the event set when either changed
    _buf: bytearray
    _eof: bool
    _wake: asyncio.Event

    async def _take(self, n: int) -> bytes:
        """Up to n bytes of what arrived, waiting for some; b"" once the far side ended."""
        while not self._buf:
            if self._eof:
                return b""
            self._wake.clear()
            await self._wake.wait()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self.received += len(data)
        return data

    @abc.abstractmethod
    async def read(self, n: int = CHUNK) -> bytes:
        """Up to n bytes from the remote port; b"" when it ended."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Bytes to the remote port (waits while the far side is slow)."""

    @abc.abstractmethod
    async def write_eof(self) -> None:
        """The local side finished sending (a half-close)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the connection and whatever carries it. Idempotent."""


async def in_thread(fn: Any, *args: Any) -> Any:
    """fn(*args) on a thread of its own: a forward's blocking calls (opening a channel, which
    waits on the far side) never queue behind other work in the loop's default executor."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def settle(error: BaseException | None, result: Any) -> None:
        if not fut.done():
            fut.set_exception(error) if error is not None else fut.set_result(result)

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
            loop.call_soon_threadsafe(settle, exc, None)  # (bound now: `exc` ends with this block)
        else:
            loop.call_soon_threadsafe(settle, None, result)

    threading.Thread(target=run, daemon=True, name="devloop-port-open").start()
    return await fut


# ------------------------------------------------------------------------------ thread-pumped


def end_writing(chan: Any) -> None:
    """Half-close a paramiko channel without ever sending EOF for a channel sshd has freed.
    paramiko's shutdown_write() builds the EOF under the channel's lock and sends it after: when
    the server's EOF+CLOSE (an HTTP/1.0 server done with its answer) are handled in between, our
    EOF goes out after our CLOSE, and OpenSSH drops the whole connection -- every forward and the
    session link with it ("ieof packet referred to nonexistent channel", seen under load). Once
    the server has sent EOF both halves are done, so close the channel: EOF and CLOSE then go out
    together, in order, and a CLOSE handled after that sends nothing more."""
    if chan.closed:
        return
    if chan.eof_received:
        chan.close()
    else:
        chan.shutdown_write()


class ThreadStream(PortStream):
    """A blocking channel (recv / sendall / shutdown_write / close) made async by two threads."""

    def __init__(self, chan: Any, loop: asyncio.AbstractEventLoop, name: str = "port") -> None:
        self.chan = chan
        self.loop = loop
        self._buf = bytearray()
        self._eof = False
        self._wake = asyncio.Event()
        self._room = threading.Condition()
        self._pending_in = 0  # bytes the reader thread handed over and nobody read yet
        self._out: list[bytes | None] = []
        self._out_cv = threading.Condition()
        self._pending_out = 0
        self._out_room = asyncio.Event()
        self._out_room.set()
        self._broken: BaseException | None = None
        self._closed = False
        threading.Thread(target=self._recv_loop, daemon=True, name=f"devloop-{name}-recv").start()
        threading.Thread(target=self._send_loop, daemon=True, name=f"devloop-{name}-send").start()

    # -- threads
    def _call(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self.loop.call_soon_threadsafe(fn, *args)

    def _recv_loop(self) -> None:
        try:
            while True:
                with self._room:
                    while self._pending_in >= BUFFERED and not self._closed:
                        self._room.wait(0.5)
                if self._closed:
                    break
                data = self.chan.recv(CHUNK)
                if not data:
                    break
                with self._room:
                    self._pending_in += len(data)
                self._call(self._feed, data)
        except Exception:  # noqa: BLE001 - the channel or its transport closed
            pass
        self._call(self._feed, b"")

    def _feed(self, data: bytes) -> None:
        if data:
            self._buf += data
        else:
            self._eof = True
        self._wake.set()

    def _send_loop(self) -> None:
        while True:
            with self._out_cv:
                while not self._out:
                    self._out_cv.wait()
                data = self._out.pop(0)
            if data is None:
                with contextlib.suppress(Exception):
                    end_writing(self.chan)
                return
            try:
                self.chan.sendall(data)
            except Exception as exc:  # noqa: BLE001 - the far side closed or the transport died
                self._broken = exc
                self._call(self._sent, 0)
                return
            self._call(self._sent, len(data))

    def _sent(self, n: int) -> None:
        self._pending_out -= n
        if self._pending_out < BUFFERED or self._broken is not None:
            self._out_room.set()

    # -- PortStream
    async def read(self, n: int = CHUNK) -> bytes:
        data = await self._take(n)
        if data:
            with self._room:
                self._pending_in -= len(data)
                self._room.notify()
        return data

    async def write(self, data: bytes) -> None:
        while self._pending_out >= BUFFERED and self._broken is None:
            self._out_room.clear()
            await self._out_room.wait()
        if self._broken is not None:
            raise ConnectionResetError(f"the remote side closed: {self._broken}")
        self._pending_out += len(data)
        with self._out_cv:
            self._out.append(data)
            self._out_cv.notify()
        self.sent += len(data)

    async def write_eof(self) -> None:
        with self._out_cv:
            self._out.append(None)
            self._out_cv.notify()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._room:
            self._room.notify_all()
        with self._out_cv:
            self._out.append(None)
            self._out_cv.notify()
        with contextlib.suppress(Exception):
            await in_thread(self.chan.close)
