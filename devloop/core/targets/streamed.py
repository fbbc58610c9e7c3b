"""The asyncio side of a channel whose bytes arrive on an I/O thread (SSH, Kubernetes exec).

The thread feeds stdout into an asyncio StreamReader through `call_soon_threadsafe` and, when
the process ends, calls `_finish`; readers then learn the exit code, or that the connection
went away (`ConnectionLost`), the same way whichever transport carried the process.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import threading

from devloop.core.targets.base import Channel, ConnectionLost

STREAM_LIMIT = 64 * 1024 * 1024  # one protocol line may carry a 64 KiB chunk, JSON-escaped


class StreamedChannel(Channel):
    """stdout lines, a stderr tail, the exit code, and lost-connection reporting."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pid: int | None = None
        self.pid_seen = threading.Event()
        self.exit_code: int | None = None
        self.lost = False
        self.killed = False
        self._reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        self._finished: asyncio.Future = loop.create_future()
        self._stderr: collections.deque[str] = collections.deque(maxlen=64)

    @abc.abstractmethod
    def _connection_lost(self) -> ConnectionLost:
        """The error that says which connection went away, and what devloop does about it."""

    # -- called from the I/O thread ------------------------------------------------------------
    def _call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass

    # -- on the loop ---------------------------------------------------------------------------
    def _finish(self, code: int) -> None:
        self.exit_code = code
        self._reader.feed_eof()
        if not self._finished.done():
            self._finished.set_result(None)

    async def readline(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError:  # a line over STREAM_LIMIT: not the protocol
            line = await self._reader.read(STREAM_LIMIT)
        if not line:
            await asyncio.shield(self._finished)
            if self.lost:
                raise self._connection_lost()
        return line

    async def read(self, n: int = 65536) -> bytes:
        data = await self._reader.read(n)
        if not data:
            await asyncio.shield(self._finished)
            if self.lost:
                raise self._connection_lost()
        return data

    async def wait(self) -> int:
        await asyncio.shield(self._finished)
        if self.lost:
            raise self._connection_lost()
        return -1 if self.exit_code is None else self.exit_code

    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-4096:]
