"""`python3 agent.pyz attach [--start]`: a front end's way into a session kernel (stdlib only).

Runs over the target's ordinary exec channel (docker exec, ssh exec, kubernetes exec, a local
subprocess) with cwd = the workdir, and copies bytes between that channel and the session's
unix socket, so no target needs a port. The first line on stdin is the front end's `hello`
(session secret, last event seen); it goes to the kernel as is. Before relaying, the relay says
one line of its own:

  {"type": "relay", "state": "attached"}           a live kernel answered
  {"type": "relay", "state": "started"}            none was there; --start started one
  {"type": "relay", "state": "no_session", "exit": {...}}   none there (and no --start):
                                                   `exit` is how the last one ended, if known
and when the kernel's side closes without a word: {"type": "relay", "state": "kernel_gone",
"exit": {...}} -- the kernel died (or ended); a link that drops says nothing at all, which is how
the front end tells "detached" from "died".
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

from . import wire

START_TIMEOUT_S = 30.0


def _say(obj):
    os.write(1, wire.encode(obj))


def _connect():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(wire.SOCKET_PATH)
    except OSError:
        sock.close()
        return None
    return sock


def _last_exit():
    try:
        with open(wire.EXIT_FILE, "rb") as fh:
            return wire.decode(fh.read())
    except (OSError, ValueError):
        return None


def _log_tail(n=2000):
    try:
        with open(wire.KERNEL_LOG, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - n))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _start_kernel(settings):
    """Start a detached session kernel (its own session, stdio on kernel.log); wait for its socket."""
    from .daemon import ensure_private_dir

    ensure_private_dir()
    try:
        os.unlink(wire.EXIT_FILE)
    except OSError:
        pass
    log_fd = os.open(wire.KERNEL_LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    bundle = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    main = [sys.executable, "-u", bundle] if bundle.endswith(".pyz") or os.path.isdir(bundle) else \
        [sys.executable, "-u", "-m", "devloop_agent.main"]
    proc = subprocess.Popen(main + ["kernel", "--serve"], stdin=subprocess.PIPE, stdout=log_fd,
                            stderr=log_fd, start_new_session=True, close_fds=True)
    os.close(log_fd)
    proc.stdin.write(wire.encode(settings))
    proc.stdin.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        sock = _connect()
        if sock is not None:
            return sock, proc
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    tail = _log_tail().strip().splitlines()
    _say({"type": wire.EV_RELAY, "state": "failed",
          "message": "the session kernel did not start" + (": " + tail[-1] if tail else "")})
    return None, proc


def attach_main(argv):
    start = "--start" in argv
    stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    hello_line = _readline(stdin)
    try:
        hello = wire.decode(hello_line)
    except ValueError:
        _say({"type": wire.EV_RELAY, "state": "failed", "message": "the first line was not a hello"})
        return 2
    sock = _connect()
    if sock is not None:
        _say({"type": wire.EV_RELAY, "state": "attached"})
    elif not start:
        _say({"type": wire.EV_RELAY, "state": "no_session", "exit": _last_exit(),
              "log": _log_tail(800) if _last_exit() else ""})
        return 3
    else:
        settings = hello.pop("start", None) or {}
        settings["secret"] = hello.get("secret")
        previous = _last_exit()  # how the session before this one ended, for the front end
        try:
            sock, _ = _start_kernel(settings)
        except OSError as exc:
            _say({"type": wire.EV_RELAY, "state": "failed", "message": "cannot start the session: %s" % exc})
            return 1
        if sock is None:
            return 1
        _say({"type": wire.EV_RELAY, "state": "started", "previous": previous})
        hello_line = wire.encode(hello)
    sock.sendall(hello_line)
    gone = {"link": False}

    def uplink():
        """Front end -> kernel. End of our stdin: the front end (or its link) is gone."""
        try:
            while True:
                data = stdin.read(65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        gone["link"] = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    threading.Thread(target=uplink, daemon=True, name="devloop-uplink").start()
    said_last = False
    carry = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
            carry = (carry + data)[-200:]
            said_last = b'"type":"bye"' in carry or b'"type":"detached"' in carry \
                or b'"type":"refused"' in carry
    except OSError:
        return 0  # our stdout (the link) is gone
    if not gone["link"] and not said_last and not hello.get("peek"):
        time.sleep(0.2)  # the supervisor writes exit.json as the kernel goes
        _say({"type": wire.EV_RELAY, "state": "kernel_gone", "exit": _last_exit(), "log": _log_tail(800)})
    return 0


def _readline(stream, limit=1 << 16):
    buf = bytearray()
    while len(buf) < limit:
        b = stream.read(1)
        if not b:
            break
        buf += b
        if b == b"\n":
            break
    return bytes(buf)


def stop_main(argv):
    """`agent.pyz session-stop`: end the session kernel of the cwd and everything it started
    (its process group: SIGTERM, then SIGKILL after 3 s). For `devloop stop` when attaching is
    not possible (no secret, another devloop version): the exec channel already runs as the
    user who owns it, so no secret adds anything here."""
    try:
        with open(wire.SESSION_FILE, "rb") as fh:
            info = json.loads(fh.read().decode("utf-8", "replace"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        _say({"type": "session_stop", "stopped": False, "reason": "no session here"})
        return 0
    from .daemon import end_group

    end_group(pid, grace=3.0)
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline and os.path.exists(wire.SESSION_FILE):
        time.sleep(0.05)  # the supervisor records the end and removes the socket
    _say({"type": "session_stop", "stopped": True, "pid": pid})
    return 0
