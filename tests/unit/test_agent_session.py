"""The session kernel (agent `kernel --serve` + `attach` relay): real processes, a real unix socket.

Each test drives the relay exactly as a front end does over a target's exec channel: a hello
line, then protocol lines; a dropped link is the relay process killed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devloop.core.agent_bundle import write_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("agent"))


class Relay:
    def __init__(self, bundle: Path, wd: Path, hello: dict, start: bool = False) -> None:
        argv = [sys.executable, "-u", str(bundle), "attach"] + (["--start"] if start else [])
        self.proc = subprocess.Popen(argv, cwd=wd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.buf = b""
        self.send(hello)

    def send(self, obj: dict) -> None:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout: float = 20.0) -> dict | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout} s (have {self.buf[:200]!r})")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def until(self, pred, timeout: float = 20.0) -> list[dict]:
        seen = []
        while True:
            ev = self.read(timeout)
            assert ev is not None, f"stream ended; saw {seen}"
            seen.append(ev)
            if pred(ev):
                return seen

    def drop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _hello(secret="s3cret", since=None, start=None):
    h = {"op": "hello", "secret": secret, "since": since, "client": "test"}
    if start is not None:
        h["start"] = start
    return h


def _exec(rid, code, cell=0, hsh="h"):
    return {"op": "exec", "id": rid, "code": code, "filename": "t.py", "first_line": 1,
            "tag": {"file": "t.py", "cell": cell, "hash": hsh}}


@pytest.fixture
def session(bundle, tmp_path):
    """A started session kernel in tmp_path/wd; stopped (and checked gone) afterwards."""
    wd = tmp_path / "wd"
    wd.mkdir()
    relay = Relay(bundle, wd, _hello(start={"session": "S1", "idle_stop_s": 0}), start=True)
    assert relay.read()["state"] == "started"
    ready = relay.read()
    assert ready["type"] == "ready" and ready["session"] == "S1"
    yield wd, relay
    subprocess.run([sys.executable, str(bundle), "session-stop"], cwd=wd, capture_output=True, timeout=30)


def test_state_survives_a_dropped_link_and_the_running_cell_output_is_replayed_once(bundle, session):
    wd, relay = session
    relay.send(_exec("a1", "import random\nX = random.random()\nprint(X)", 0, "h0"))
    out = relay.until(lambda e: e.get("type") == "done")
    x = next(e["data"] for e in out if e["type"] == "out").strip()
    relay.send(_exec("a2", "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n    time.sleep(0.3)",
                     1, "h1"))
    first = relay.until(lambda e: e.get("type") == "out")
    last_seq = first[-1]["seq"]
    relay.drop()  # the link dies mid-cell; the cell goes on
    time.sleep(1.5)
    again = Relay(bundle, wd, _hello(since=last_seq))
    assert again.read()["state"] == "attached"
    ready = again.read()
    assert ready["type"] == "ready"
    events = again.until(lambda e: e.get("type") == "done" and e.get("id") == "a2")
    ticks = [e["data"] for e in events if e.get("type") == "out"]
    assert "".join(ticks).count("tick") == 3  # ticks 1..3, tick 0 was seen before the drop
    assert all(e.get("replayed") for e in events if e.get("seq", 0) <= ready["seq"])
    assert ready["results"]["t.py"]["0"] == {**ready["results"]["t.py"]["0"], "hash": "h0", "ok": True}
    again.send(_exec("a3", "print(X)", 2, "h2"))
    out = again.until(lambda e: e.get("type") == "done")
    assert [e["data"].strip() for e in out if e["type"] == "out"] == [x]


def test_a_new_front_end_without_a_seq_gets_what_arrived_while_detached(bundle, session):
    wd, relay = session
    relay.send(_exec("b1", "import time\ntime.sleep(0.5)\nprint('late')"))
    time.sleep(0.2)  # the request reached the kernel (a client resends one that did not: see `received`)
    relay.drop()
    time.sleep(1.5)
    fresh = Relay(bundle, wd, _hello())
    fresh.read()
    ready = fresh.read()
    assert ready["results"]["t.py"]["0"]["ok"] is True and ready["running"] is None
    assert "b1" in ready["received"]
    events = fresh.until(lambda e: e.get("type") == "done")
    assert [e["data"] for e in events if e["type"] == "out"] == ["late\n"]
    assert all(e["replayed"] for e in events)


def test_a_wrong_secret_is_refused(bundle, session):
    wd, _ = session
    bad = Relay(bundle, wd, _hello(secret="nope"))
    assert bad.read()["state"] == "attached"
    refused = bad.read()
    assert refused["type"] == "refused" and "secret" in refused["reason"]
    assert bad.read() is None


def test_a_second_front_end_takes_over_and_the_first_is_told(bundle, session):
    wd, relay = session
    second = Relay(bundle, wd, _hello())
    second.read()
    assert second.read()["type"] == "ready"
    told = relay.until(lambda e: e.get("type") == "detached")
    assert "another" in told[-1]["reason"]
    second.send(_exec("c1", "print(40 + 2)"))
    assert any(e.get("data") == "42\n" for e in second.until(lambda e: e.get("type") == "done"))


def test_a_kernel_that_dies_is_reported_with_how_it_ended(bundle, session):
    wd, relay = session
    relay.send(_exec("d1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))
    gone = relay.until(lambda e: e.get("type") == "relay")[-1]
    assert gone["state"] == "kernel_gone"
    assert gone["exit"]["exit_code"] == -9
    late = Relay(bundle, wd, _hello())
    word = late.read()
    assert word["state"] == "no_session" and word["exit"]["exit_code"] == -9


def test_the_session_folder_and_socket_are_private_and_nothing_listens_on_tcp(bundle, session):
    wd, relay = session
    folder = wd / ".devloop" / "session"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sock = folder / "kernel.sock"
    assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    pid = json.loads((folder / "session.json").read_text())["pid"]
    fds = os.listdir(f"/proc/{pid}/fd")
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds if os.path.exists(f"/proc/{pid}/fd/{fd}")]
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    tcp = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    listening = {line.split()[9] for line in tcp.splitlines()[1:] if line.split()[3] == "0A"}
    assert not inodes & listening


def test_idle_stop_ends_a_detached_session(bundle, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    relay = Relay(bundle, wd, _hello(start={"session": "S2", "idle_stop_s": 0.5}), start=True)
    relay.read()
    relay.read()
    relay.send({"op": "detach"})
    assert relay.read() is None or True
    deadline = time.monotonic() + 20
    exit_file = wd / ".devloop" / "session" / "exit.json"
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert json.loads(exit_file.read_text())["reason"] == "idle"
    assert not (wd / ".devloop" / "session" / "kernel.sock").exists()


def test_session_stop_ends_the_kernel_and_children_that_ignore_sigterm(bundle, session):
    wd, relay = session
    relay.send(_exec("e1", "import subprocess, sys\n"
                           "p = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
                           "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
                           "print(p.pid)"))
    child = int(next(e["data"] for e in relay.until(lambda e: e.get("type") == "done") if e["type"] == "out"))
    kernel = json.loads((wd / ".devloop" / "session" / "session.json").read_text())["pid"]
    done = subprocess.run([sys.executable, str(next(Path(p) for p in [relay.proc.args[2]])), "session-stop"],
                          cwd=wd, capture_output=True, timeout=30)
    assert json.loads(done.stdout)["stopped"] is True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_alive(child) or _alive(kernel)):
        time.sleep(0.1)
    assert not _alive(child) and not _alive(kernel)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_runaway_recursion_is_reported_quickly_with_a_bounded_traceback(bundle, session):
    """issue 21 item 12: sys.setrecursionlimit(300000) and runaway recursion (plain Python: ~5 s)."""
    wd, relay = session
    relay.send(_exec("r1", "import sys\nsys.setrecursionlimit(300000)\ndef f(n):\n    return f(n + 1)\nf(0)"))
    events = relay.until(lambda e: e.get("type") == "done", timeout=60)
    error = next(e for e in events if e.get("type") == "error")
    assert error["etype"] == "RecursionError"
    assert len(error["frames"]) <= 200 and len(error["traceback"]) <= 64 * 1024
    assert "more times" in error["traceback"] and error["frames"][-1]["file"] == "t.py"


DAEMON = ("import os, sys, time\n"
          "r, w = os.pipe()\n"
          "if os.fork() == 0:\n"
          "    os.setsid()\n"
          "    if os.fork() == 0:\n"
          "        import signal\n"
          "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
          "        os.write(w, str(os.getpid()).encode())\n"
          "        time.sleep(300)\n"
          "    os._exit(0)\n"
          "print('daemon', os.read(r, 32).decode())\n")


def test_session_stop_ends_a_daemon_a_cell_started(bundle, session):
    """issue 21 item 8: a double-forked, setsid() daemon that ignores SIGTERM leaves the process
    group; the supervisor, a child subreaper, gets it back and ends it."""
    wd, relay = session
    relay.send(_exec("g1", DAEMON))
    out = "".join(e["data"] for e in relay.until(lambda e: e.get("type") == "done") if e["type"] == "out")
    daemon = int(out.split()[1])
    assert _alive(daemon)
    subprocess.run([sys.executable, str(relay.proc.args[2]), "session-stop"], cwd=wd, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(daemon):
        time.sleep(0.1)
    assert not _alive(daemon)
