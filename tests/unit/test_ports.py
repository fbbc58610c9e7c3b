"""Port forwarding pieces with real sockets and processes: the spec, its config keys, who holds
a busy port, the agent's `connect` relay mode, and the forwarder on the local target."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devloop.core.agent_bundle import write_bundle
from devloop.core.config import ConfigError, load_config
from devloop.core.ports.busy_port import busy_message, port_owner
from devloop.core.ports.forwarder import Forwarder, PortBusy
from devloop.core.ports.spec import ForwardSpec, merge, parse_spec
from devloop.core.targets.local import LocalTarget


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- spec + config

def test_specs_parse_and_merge_by_local_port():
    assert parse_spec("6006") == ForwardSpec(6006, 6006)
    assert parse_spec(6006) == ForwardSpec(6006, 6006)
    assert parse_spec("18888:8888") == ForwardSpec(18888, 8888)
    assert parse_spec("5433:db:5432") == ForwardSpec(5433, 5432, "db")
    assert parse_spec("18888:8888").text == "18888:8888" and parse_spec("6006").text == "6006"
    for bad in ("", "abc", "0", "70000", "1:2:3:4", "x:8888", True, 1.5):
        with pytest.raises(ValueError):
            parse_spec(bad)
    merged = merge(["6006", "18888:8888"], ["6006:7006"], ["9000"])
    assert merged == (ForwardSpec(6006, 7006), ForwardSpec(18888, 8888), ForwardSpec(9000, 9000))


def test_ports_config_and_profile_forward(tmp_path: Path):
    (tmp_path / "devloop.toml").write_text('[project]\nname = "t"\n[ports]\nforward = ["6006", 7000]\n'
                                           'bind = "0.0.0.0"\n')
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text("kind: local\nforward: [\"6006:16006\"]\n")
    config = load_config(tmp_path)
    assert config.ports.forward == ("6006", "7000") and config.ports.bind == "0.0.0.0"
    assert config.profile("p").forward == ("6006:16006",)
    assert config.to_dict()["ports"] == {"forward": ["6006", "7000"], "bind": "0.0.0.0"}
    (tmp_path / "devloop.toml").write_text('[project]\nname = "t"\n[ports]\nforward = ["6006:x"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path)
    assert "devloop.toml:4" in str(err.value) and "fix:" in str(err.value)
    (tmp_path / "devloop.toml").write_text('[project]\nname = "t"\n[ports]\nbind = "everywhere"\n')
    with pytest.raises(ConfigError, match="bind"):
        load_config(tmp_path)


def test_a_busy_port_names_its_process_and_a_free_port():
    holder = subprocess.Popen([sys.executable, "-c", "import socket,time; s=socket.socket(); "
                               "s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        assert port_owner(port)[0] == holder.pid
        message, fix = busy_message(port, "127.0.0.1", "target:6006")
        assert f"local port {port}" in message and f"pid {holder.pid}" in message and "python" in message
        assert "--forward" in fix and "is free" in fix
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- agent connect mode

@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("agent"))


def _relay(bundle: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-S", "-u", str(bundle), "connect", "127.0.0.1", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_connect_mode_relays_bytes_both_ways(bundle: Path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    proc = _relay(bundle, port)
    out, _ = proc.communicate(b"go\nhello relay", timeout=30)
    srv.close()
    assert out == b'{"type":"connect","ok":true}\nHELLO RELAY' and proc.returncode == 0


def test_connect_mode_says_refused_and_a_relay_never_told_to_go_exits(bundle: Path):
    proc = _relay(bundle, free_port())
    out, _ = proc.communicate(b"go\n", timeout=30)
    assert out.startswith(b'{"type":"connect","ok":false,"error":"connection refused"') and proc.returncode == 0
    proc = _relay(bundle, free_port())
    out, _ = proc.communicate(b"", timeout=30)  # started ahead, then its front end went
    assert out == b"" and proc.returncode == 0


# ----------------------------------------------------------------------------- the forwarder, local target

class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(root: Path, port: int) -> _Server:
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while data := s.recv(1 << 20):
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        raise ConnectionError(f"no answer: {raw[:80]!r}")
    return body


async def test_forwarder_on_the_local_target(tmp_path: Path):
    (tmp_path / "devloop.toml").write_text('[project]\nname = "t"\n')
    config = load_config(tmp_path)
    target = LocalTarget(config.profile(None), config)
    await target.start()
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "blob.bin").write_bytes(data)
    local, remote = free_port(), free_port()
    states = []
    fwd = Forwarder((ForwardSpec(local, remote),), on_state=lambda s: states.append(s.state))
    await fwd.bind()
    fwd.start(target)
    try:
        with pytest.raises(ConnectionError):  # nothing listens yet: refused, the forward stays
            await asyncio.to_thread(_get, local, "/blob.bin")
        server = _serve(tmp_path, remote)
        try:
            body = await asyncio.to_thread(_get, local, "/blob.bin")
            assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
            bodies = await asyncio.gather(*(asyncio.to_thread(_get, local, "/blob.bin") for _ in range(20)))
            assert all(b == data for b in bodies)
        finally:
            server.shutdown()
            server.server_close()
        assert _relays_in(tmp_path) != []  # the relay runs while the forward does
        state = fwd.states[0]
        assert state.refused == 1 and state.total == 22 and fwd.bytes_of(state)[0] >= 21 * len(data)
        with pytest.raises(PortBusy) as busy:  # the same local port again
            await Forwarder((ForwardSpec(local, remote),)).bind()
        assert f"local port {local}" in str(busy.value) and f"pid {os.getpid()}" in str(busy.value)
    finally:
        await fwd.close()
    assert states == ["listening", "closed"]
    with socket.socket() as s:  # the listener is gone
        assert s.connect_ex(("127.0.0.1", local)) != 0
    assert _relays_in(tmp_path) == []  # no relay process left behind


def _relays_in(cwd: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "connect --mux"], capture_output=True, text=True).stdout.split()
    found = []
    for pid in out:
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(cwd.resolve()):
                found.append(pid)
        except OSError:
            pass
    return found


async def test_in_thread_hands_an_error_back_also_when_the_loop_is_busy_meanwhile():
    """The error is bound when the thread schedules it (a closure over `exc` found it deleted
    when the loop got to it late: the refused connection then hung)."""
    import time

    from devloop.core.ports.stream import in_thread

    def boom() -> None:
        raise ValueError("refused")

    task = asyncio.ensure_future(in_thread(boom))
    await asyncio.sleep(0)  # the thread starts
    time.sleep(0.3)  # the loop is busy while the thread fails and leaves its except block
    with pytest.raises(ValueError, match="refused"):
        await asyncio.wait_for(task, 10)
    assert await in_thread(lambda: 42) == 42
