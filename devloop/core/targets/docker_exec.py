"""A process in a container through `docker exec`, as a target Channel.

The exec's hijacked socket carries stdin one way and docker's multiplexed stdout/stderr frames
(8-byte header: stream, 3 zero bytes, big-endian length) the other, because the exec has no tty.
One reader thread per channel demultiplexes the frames (the SDK's socket is blocking, and TLS or
ssh engines give no selectable fd); stdout chunks reach asyncio through `call_soon_threadsafe`
and are cut into lines there (`readline`) or read as bytes (`read`, a forwarded port's relay).

The process is started through `sh -c 'echo $$; exec "$@"'`, so the first stdout line is its pid
inside the container (docker only reports the host pid): `kill()` sends SIGKILL to that process
group with another exec. Docker exec processes lead their own session, so the group is exactly
the process and what it started.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import threading
from typing import Any, Sequence

from devloop.core.targets.base import Channel, ConnectionLost

_HEADER = struct.Struct(">BxxxL")
PID_WRAPPER = ["/bin/sh", "-c", 'echo $$; exec "$@"', "devloop"]


def _raw_socket(sock: Any) -> Any:
    """The socket under the SDK's SocketIO wrapper (unix/tcp); TLS/npipe objects as they are."""
    return getattr(sock, "_sock", sock)


class DockerExecChannel(Channel):
    def __init__(self, api: Any, container_id: str, exec_id: str, sock: Any) -> None:
        self._api = api
        self._container_id = container_id
        self._exec_id = exec_id
        self._holder = sock  # keeps the SDK's response (and so a TLS socket) alive
        self._sock = _raw_socket(sock)
        try:
            self._sock.settimeout(None)  # the client's API timeout must not end an idle kernel
        except (AttributeError, OSError):
            pass
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()  # stdout not read yet
        self._scanned = 0  # readline found no newline in _buf[:_scanned]
        self._wakeup = asyncio.Event()
        self._eof = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=64)
        self._send_lock = threading.Lock()
        self._stdin_closed = False
        self._closed = False
        self._group_ended = False  # kill() sent its signals (once is enough)
        self.pid: int | None = None
        self._pid_seen = asyncio.Event()
        self._exit_code: int | None = None
        self._lost = False
        self._lost_why = "the container was removed while devloop was using it"
        self._reader = threading.Thread(target=self._read_frames, name="devloop-docker-exec", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------ reader thread
    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self._sock.recv(n - len(buf))
            except (OSError, ValueError):  # closed by kill() or by the engine
                return b""
            if not chunk:
                return b""
            buf += chunk
        return bytes(buf)

    def _read_frames(self) -> None:
        """Demultiplex frames; stdout goes to the loop as it came (whole chunks: a relayed port
        carries binary data, so lines are split on the loop side, by readline, only)."""
        pending = bytearray()
        first = True
        while True:
            header = self._recv_exact(_HEADER.size)
            if len(header) < _HEADER.size:
                break
            stream, size = _HEADER.unpack(header)
            data = self._recv_exact(size)
            if len(data) < size:
                break
            if stream == 2:
                self._stderr.append(data.decode("utf-8", "replace"))
                continue
            if first:
                pending += data
                nl = pending.find(b"\n")
                if nl < 0:
                    continue
                first = False
                head = bytes(pending[:nl + 1]).strip()
                if head.isdigit():
                    self.pid = int(head)
                    del pending[:nl + 1]
                elif head.startswith(b"OCI runtime exec failed"):  # the engine's, not the process's
                    self._stderr.append(bytes(pending[:nl + 1]).decode("utf-8", "replace"))
                    del pending[:nl + 1]
                self._loop.call_soon_threadsafe(self._pid_seen.set)
                data, pending = bytes(pending), bytearray()
                if not data:
                    continue
            self._loop.call_soon_threadsafe(self._push, data, False)
        try:
            self._loop.call_soon_threadsafe(self._push, bytes(pending), True)
            self._loop.call_soon_threadsafe(self._pid_seen.set)
        except RuntimeError:  # the loop closed first (interpreter shutting down)
            pass

    def _push(self, data: bytes, eof: bool) -> None:
        self._buf += data
        if eof:
            self._eof = True
        self._wakeup.set()

    # ------------------------------------------------------------ Channel
    async def readline(self) -> bytes:
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                return self._take(nl + 1)
            self._scanned = len(self._buf)
            if self._eof:
                return await self._at_eof()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def read(self, n: int = 65536) -> bytes:
        while not self._buf:
            if self._eof:
                return await self._at_eof()
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._take(min(n, len(self._buf)))

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._scanned = max(0, self._scanned - n)
        return data

    async def _at_eof(self) -> bytes:
        """The rest of stdout (a last line without a newline), then b"" -- or ConnectionLost
        when the container went away under the process."""
        if self._buf:
            return self._take(len(self._buf))
        if await self._container_gone():
            raise ConnectionLost(self._lost_why)
        return b""

    async def send(self, data: bytes) -> None:
        if self._stdin_closed:
            raise BrokenPipeError("stdin of the container process is closed")
        try:
            await asyncio.to_thread(self._send_sync, data)
        except (BrokenPipeError, ConnectionResetError):
            raise  # the process ended
        except OSError as exc:  # the socket itself is gone: an engine reached over SSH dropped
            self._lost = True
            self._lost_why = f"the connection to the Docker engine was lost ({exc})"
            raise ConnectionLost(self._lost_why) from exc

    def _send_sync(self, data: bytes) -> None:
        with self._send_lock:
            self._sock.sendall(data)

    async def close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        await asyncio.to_thread(self._shutdown_write)

    def _shutdown_write(self) -> None:
        with self._send_lock:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except (OSError, AttributeError):
                pass

    async def wait(self) -> int:
        while not self._eof:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._exit_code is None:
            self._exit_code = await asyncio.to_thread(self._exit_code_sync)
        if self._exit_code is None:
            raise ConnectionLost(self._lost_why)
        self._close_socket()
        return self._exit_code

    def _exit_code_sync(self) -> int | None:
        """ExitCode from exec_inspect; it may lag the stream's end by a few ms."""
        import time

        import docker.errors

        for attempt in range(200):
            try:
                info = self._api.exec_inspect(self._exec_id)
            except docker.errors.NotFound:
                self._lost = True
                return None
            except docker.errors.DockerException:
                return None
            except Exception as exc:  # noqa: BLE001 - the way to the engine broke (an SSH transport)
                self._lost = True
                self._lost_why = f"the connection to the Docker engine was lost ({type(exc).__name__}: {exc})"
                return None
            code = info.get("ExitCode")
            if not info.get("Running") and (code is not None or attempt >= 5):
                if code != 0 and not self._container_exists():
                    self._lost = True  # ended with its container (removed from outside)
                    return None
                if code is not None:
                    return int(code)
            time.sleep(0.01)
        return None

    def _container_exists(self) -> bool:
        import docker.errors

        try:
            return self._api.inspect_container(self._container_id)["State"].get("Running", False)
        except docker.errors.NotFound:
            return False
        except docker.errors.DockerException:
            return True
        except Exception:  # noqa: BLE001 - the engine is out of reach: so is the container
            return False

    async def _container_gone(self) -> bool:
        if self._exit_code is None and not self._lost:
            self._exit_code = await asyncio.to_thread(self._exit_code_sync)
        return self._lost

    async def kill(self) -> None:
        if self._group_ended:
            return
        if not self._eof and not self._closed:
            if self.pid is None:  # the wrapper's first line is a few ms away at most
                try:
                    await asyncio.wait_for(self._pid_seen.wait(), 2)
                except asyncio.TimeoutError:
                    pass
            self._group_ended = True
            await asyncio.to_thread(self._kill_sync)
        elif self._eof and self.pid is not None:
            # the process ended, but what it started (one ignoring SIGTERM) may live on in its group
            self._group_ended = True
            await asyncio.to_thread(self._end_group_sync)
        self._close_socket()

    def _kill_sync(self) -> None:
        import docker.errors

        if self.pid is None:
            return
        try:
            eid = self._api.exec_create(
                self._container_id, ["/bin/sh", "-c", "kill -KILL -$0 2>/dev/null || kill -KILL $0",
                                     str(self.pid)], user="root")["Id"]
            self._api.exec_start(eid)
        except Exception:  # noqa: BLE001 - the container (or the way to its engine) is gone
            pass

    def _end_group_sync(self) -> None:
        """SIGTERM what is left of the exited process's group, SIGKILL it after ~1 s (never
        the bare pid: it may be reused)."""
        script = ("kill -TERM -$0 2>/dev/null || exit 0; i=0; "
                  "while [ $i -lt 10 ] && kill -0 -$0 2>/dev/null; do sleep 0.1; i=$((i+1)); done; "
                  "kill -KILL -$0 2>/dev/null; true")
        try:
            eid = self._api.exec_create(self._container_id, ["/bin/sh", "-c", script, str(self.pid)],
                                        user="root")["Id"]
            self._api.exec_start(eid)
        except Exception:  # noqa: BLE001 - the container (or the way to its engine) is gone
            pass

    def _close_socket(self) -> None:
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            self._holder.close()
        except (OSError, AttributeError):
            pass

    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-4096:]


def wrap_argv(argv: Sequence[str]) -> list[str]:
    """argv behind the pid-reporting shell wrapper (see the module docstring)."""
    return [*PID_WRAPPER, *argv]
