"""Port forwarding (issue 17) as one scenario every target runs, in-process through the real
Session (mode "session": up / watch / attach) on the real target: a cell starts a threaded HTTP
server inside the target; the test downloads a 20 MB file it wrote through the local port and
compares hashes, makes 20 requests at once, checks that a request before the server is up is
refused cleanly (and one after works), that a busy local port fails the start clearly, and that
nothing is left listening or relaying after the stop."""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import dataclasses
import os
import hashlib
import socket
import subprocess
import textwrap
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from devloop.core import events as ev
from devloop.core.host import SessionHost
from devloop.core.ports.forwarder import PortBusy

BLOB_WORDS = 5 * 1024 * 1024  # 20 MB of uint32 counters: any reordered or lost chunk shows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cell(port: int) -> str:
    return textwrap.dedent(f"""\
        # %% serve
        import array, http.server, threading
        with open("blob.bin", "wb") as fh:
            fh.write(array.array("I", range({BLOB_WORDS})).tobytes())

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # as TensorBoard's werkzeug; socketserver's 5 drops SYNs of 20 at once

        SERVER = Server(("127.0.0.1", {port}), Quiet)
        SERVER.daemon_threads = True
        threading.Thread(target=SERVER.serve_forever, daemon=True).start()
        print("serving", {port})
        """)


def blob_sha() -> str:
    return hashlib.sha256(array.array("I", range(BLOB_WORDS)).tobytes()).hexdigest()


def http_get(port: int, path: str = "/blob.bin") -> bytes:
    """The body of GET path through the local port; ConnectionError when the forward refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        chunks = []
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        raise ConnectionError(f"refused (answer {raw[:60]!r})")
    return body


_CLIENTS = concurrent.futures.ThreadPoolExecutor(24, thread_name_prefix="test-client")


async def get(port: int, path: str = "/blob.bin") -> bytes:
    """http_get on the test's own threads (the loop's default executor is devloop's)."""
    return await asyncio.get_running_loop().run_in_executor(_CLIENTS, http_get, port, path)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def forward_scenario(root: Path, config, profile, *, remote_port: int,
                           drop: Callable[[object], Awaitable[None]] | None = None,
                           during: Callable[[], list] | None = None) -> list[ev.Event]:
    """The whole scenario on one target; returns the events (the caller checks what is left)."""
    nb = root / "serve.py"
    nb.write_text(server_cell(remote_port))
    local = free_port()
    events: list[ev.Event] = []

    # a busy local port: the start fails at once, naming this process and a free port
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    host = SessionHost.for_profile(config, profile, nb, mode="session", forward=(f"{busy}:{remote_port}",))
    try:
        with pytest.raises(PortBusy) as err:
            await host.start()
        assert f"local port {busy}" in str(err.value) and "pid" in str(err.value) and "fix:" in str(err.value)
    finally:
        await host.close()
        holder.close()

    host = SessionHost.for_profile(config, profile, nb, mode="session", forward=(f"{local}:{remote_port}",))
    host.subscribe(events.append)
    try:
        await host.start()
        session = host.session
        assert [(e.local, e.remote, e.state) for e in events if isinstance(e, ev.PortForward)] == \
            [(local, remote_port, "listening")]
        with pytest.raises(ConnectionError):  # nothing listens in the target yet: refused cleanly
            await get(local, "/")
        done = await session.run_all()
        assert done is not None and done.ok, [e for e in events if isinstance(e, (ev.CellError, ev.Output))]
        body = await get(local)  # the same forward, now the server is up
        assert len(body) == 4 * BLOB_WORDS and hashlib.sha256(body).hexdigest() == blob_sha()
        small = await asyncio.gather(*(get(local, "/serve.py") for _ in range(20)), return_exceptions=True)
        said = [e.message for e in events if isinstance(e, ev.Diagnostic)][-8:]
        assert all(b == nb.read_bytes() for b in small), (small, said)  # 20 at once, all whole
        if during is not None:
            assert during(), "the check for leftovers sees the relay while it runs"
        if drop is not None:  # the link to the target drops: the forward comes back with the session
            await drop(session)
            try:
                body = await get(local, "/serve.py")
            except ConnectionError as exc:
                said = [e.message for e in events if isinstance(e, (ev.Diagnostic, ev.TargetState))][-12:]
                raise AssertionError(f"after the drop: {exc}; devloop said: {said}") from None
            assert body == nb.read_bytes()
    finally:
        await host.close()
    assert [e.state for e in events if isinstance(e, ev.PortForward)] == ["listening", "closed"]
    assert not listening(local)
    return events


def relays_on_this_machine(workdir: str | Path) -> list[str]:
    """The agent's port relays (`connect --mux`) running on this machine in `workdir`."""
    found = []
    out = subprocess.run(["pgrep", "-f", "connect --mux"], capture_output=True, text=True)
    for pid in out.stdout.split():
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == Path(workdir).resolve():
                found.append(pid)
        except OSError:
            continue
    return found


def with_profile(config, name: str, **fields):
    return dataclasses.replace(config.profile(name), **fields)
