"""A process in a pod over a Kubernetes exec stream, as a `Channel`.

Kubernetes 1.20 speaks the v4 channel protocol, which cannot half-close stdin: a process
started by exec never sees EOF while the stream is open. So every process is started under a
tiny relay (`RELAY`, stdlib Python, run by the pod's own interpreter) that reads *framed* stdin
(4-byte big-endian length + data), writes the data into the real process's stdin pipe, and
treats two special lengths as signals: 0 closes the pipe (EOF), 0xFFFFFFFF kills the process's
whole session (it was started with setsid). The relay reports the pid first and the exit status
last on stderr (`DEVLOOP-PID n`, `DEVLOOP-EXIT n`, negative for a signal), so exit codes keep
the meaning they have locally. stdout and stderr are the process's own: nothing is copied.

One thread per channel owns the websocket (TLS objects must not be read and written from two
threads at once): it writes what `send()` queued, reads frames, and feeds stdout into an
asyncio StreamReader.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import select
import ssl
import threading
from typing import Any, Callable, Mapping, Sequence

from devloop.core.targets.base import ConnectionLost
from devloop.core.targets.streamed import StreamedChannel

WRITE_CHUNK = 64 * 1024
EOF_FRAME = (0).to_bytes(4, "big")
KILL_FRAME = (0xFFFFFFFF).to_bytes(4, "big")
_PID_RE = re.compile(rb"DEVLOOP-PID (\d+)\n")
_EXIT_RE = re.compile(r"\n?DEVLOOP-EXIT (-?\d+)\n?")

# Runs in the pod as `python -S -c RELAY SPEC_JSON`. Python 3.8+, stdlib only.
RELAY = r'''
import json, os, signal, sys, threading
spec = json.loads(sys.argv[1])
argv = spec["argv"]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        os.dup2(r, 0); os.close(r); os.close(w)
        for s in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, s): signal.signal(getattr(signal, s), signal.SIG_DFL)
        if spec.get("cwd"): os.chdir(spec["cwd"])
        env = dict(os.environ); env.update(spec.get("env") or {})
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        os.write(2, ("devloop: cannot run %s in %s: %s\n" % (argv[0], spec.get("cwd") or ".", e.strerror)).encode())
    os._exit(127)
os.close(r)
os.write(2, ("DEVLOOP-PID %d\n" % pid).encode())
def kill():
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == pid: os.kill(int(d), 9)
            except OSError: pass
def pump():
    out = [w]
    buf = bytearray()
    def close():
        if out[0] is not None:
            try: os.close(out[0])
            except OSError: pass
            out[0] = None
    def need(n):
        while len(buf) < n:
            d = os.read(0, 1 << 20)
            if not d: return False
            buf.extend(d)
        return True
    while True:
        if not need(4): close(); return
        n = int.from_bytes(bytes(buf[:4]), "big"); del buf[:4]
        if n == 0xFFFFFFFF: kill(); continue
        if n == 0: close(); continue
        if not need(n): close(); return
        data = bytes(buf[:n]); del buf[:n]
        if out[0] is not None:
            try:
                mv = memoryview(data)
                while mv: mv = mv[os.write(out[0], mv):]
            except OSError: close()
t = threading.Thread(target=pump); t.daemon = True; t.start()
while True:
    try:
        _, st = os.waitpid(pid, 0); break
    except InterruptedError: pass
code = -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)
os.write(2, ("\nDEVLOOP-EXIT %d\n" % code).encode())
os._exit(code if code >= 0 else 128 - code)
'''


def relay_command(python: str, argv: Sequence[str], env: Mapping[str, str] | None,
                  cwd: str | None) -> list[str]:
    """The exec command that runs `argv` under the relay (framed stdin, pid, exit status)."""
    spec = {"argv": list(argv), "env": dict(env or {}), "cwd": cwd or ""}
    return [python, "-S", "-c", RELAY, json.dumps(spec, separators=(",", ":"))]


def exit_code_from_status(text: str | bytes | None) -> int | None:
    """The exit code in the exec error channel's Status JSON (None when there is none)."""
    if not text:
        return None
    try:
        status = json.loads(text)
    except ValueError:
        return None
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return None
    return None


class KubeExecChannel(StreamedChannel):
    """One exec stream (a WSClient from kubernetes.stream) running a process under the relay."""

    def __init__(self, ws: Any, loop: asyncio.AbstractEventLoop, describe: str,
                 lost_error: Callable[[], ConnectionLost], kill_fallback: Callable[[int], Any] | None = None) -> None:
        super().__init__(loop)
        self.ws = ws
        self.describe = describe
        self._lost_error = lost_error
        self._kill_fallback = kill_fallback
        self.status_text = ""  # the error channel's Status (why exec ended, per the kubelet)
        self._stderr_head = b""
        self._outq: collections.deque[tuple[bytes, asyncio.Future | None]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, daemon=True, name="devloop-kube-exec")
        self._thread.start()

    # -- the I/O thread ------------------------------------------------------------------------
    def _settle(self, fut: asyncio.Future | None, exc: BaseException | None) -> None:
        if fut is None:
            return

        def done() -> None:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)
        self._call(done)

    def _write_pending(self) -> None:
        from kubernetes.stream.ws_client import STDIN_CHANNEL

        while self._outq:
            data, fut = self._outq.popleft()
            try:
                for i in range(0, len(data), WRITE_CHUNK):
                    self.ws.write_channel(STDIN_CHANNEL, data[i:i + WRITE_CHUNK])
            except Exception as exc:  # noqa: BLE001 - the stream broke under us
                self._settle(fut, BrokenPipeError(f"the exec stream closed: {exc}"))
                raise
            self._settle(fut, None)

    def _drain(self) -> None:
        from kubernetes.stream.ws_client import STDERR_CHANNEL, STDOUT_CHANNEL

        out = self.ws.read_channel(STDOUT_CHANNEL, timeout=0)
        if out:
            self._call(self._reader.feed_data, out)
        err = self.ws.read_channel(STDERR_CHANNEL, timeout=0)
        if err:
            self._on_stderr(err)

    def _on_stderr(self, data: bytes) -> None:
        if self.pid is None:
            self._stderr_head += data
            m = _PID_RE.match(self._stderr_head)
            if m is None:
                if b"\n" in self._stderr_head or len(self._stderr_head) > 256:  # not the relay talking
                    data, self._stderr_head = self._stderr_head, b""
                    self.pid = -1
                    self.pid_seen.set()
                else:
                    return
            else:
                self.pid = int(m.group(1))
                self.pid_seen.set()
                data, self._stderr_head = self._stderr_head[m.end():], b""
        if data:
            self._stderr.append(data.decode("utf-8", "replace"))

    def _run(self) -> None:
        sock = getattr(self.ws.sock, "sock", None)
        poll = select.poll()
        if sock is not None:
            poll.register(sock, select.POLLIN)
        poll.register(self._wake_r, select.POLLIN)
        try:
            while self.ws.is_open():
                self._write_pending()
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    poll.poll(None if sock is not None else 100)
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                self._write_pending()
                self.ws.update(timeout=0)
                self._drain()
            self._drain()
        except Exception:  # noqa: BLE001 - the connection dropped (apiserver gone, network)
            self.lost = True
        from kubernetes.stream.ws_client import ERROR_CHANNEL

        try:
            status = self.ws.read_channel(ERROR_CHANNEL, timeout=0)
        except Exception:  # noqa: BLE001
            status = b""
        self.status_text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status or "")
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        tail = "".join(self._stderr)
        marker = _EXIT_RE.search(tail)
        code = int(marker.group(1)) if marker else exit_code_from_status(self.status_text)
        if marker is not None:
            self._stderr.clear()
            self._stderr.append(tail[: marker.start()] + tail[marker.end():])
        if code is not None:
            self.lost = False
        elif not self.killed:
            self.lost = True  # no status at all: the stream was cut (pod deleted, apiserver down)
        self.pid_seen.set()
        while self._outq:
            _, fut = self._outq.popleft()
            self._settle(fut, BrokenPipeError("the process has exited"))
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._call(self._finish, -1 if code is None else code)

    def _enqueue(self, data: bytes, fut: asyncio.Future | None) -> None:
        if self._finished.done():
            raise BrokenPipeError("the process has exited")
        self._outq.append((data, fut))
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _connection_lost(self) -> ConnectionLost:
        exc = self._lost_error()
        try:
            why = json.loads(self.status_text).get("message", "") if self.status_text else ""
        except (ValueError, AttributeError):
            why = self.status_text
        if why:
            exc = ConnectionLost(f"{exc.message}: {why.strip()[:300]}", hint=exc.hint)
        return exc

    # -- Channel -------------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        if not data:
            return
        fut = self.loop.create_future()
        self._enqueue(len(data).to_bytes(4, "big") + data, fut)
        try:
            await fut
        except BrokenPipeError:
            if self.lost:
                raise self._connection_lost() from None
            raise

    async def close_stdin(self) -> None:
        try:
            fut = self.loop.create_future()
            self._enqueue(EOF_FRAME, fut)
            await fut
        except BrokenPipeError:
            pass

    async def kill(self) -> None:
        if self.killed:
            return
        self.killed = True
        if self._finished.done():
            return
        try:
            self._enqueue(KILL_FRAME, None)
        except BrokenPipeError:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), 3)
            return
        except asyncio.TimeoutError:
            pass
        # the relay did not answer: kill the session from a second exec, then drop the stream
        await asyncio.to_thread(self.pid_seen.wait, 1.0)
        if self._kill_fallback is not None and self.pid and self.pid > 0:
            try:
                await self._kill_fallback(self.pid)
            except Exception:  # noqa: BLE001 - best effort
                pass
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass

