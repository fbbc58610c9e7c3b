"""`python3 agent.pyz connect HOST PORT`: one forwarded connection, relayed (stdlib only).

Runs over the target's own exec channel (docker exec, ssh exec, kubernetes exec, a local
subprocess), so a port is reachable on every target: a container with `--network none`, a pod
with no Service. One process per local connection.

The process waits for one line on stdin (the front end keeps one started ahead, so a new
connection does not wait for a process to start), then connects and says one line:

  {"type": "connect", "ok": true}
  {"type": "connect", "ok": false, "error": "connection refused"}   (and exits 0)

After `ok` the rest of stdin goes to the socket and what the socket sends comes out on stdout,
byte for byte. End of stdin half-closes the socket; the socket's end ends the process. A front
end that goes away (its channel closes) ends stdin: a process started ahead and never used
exits at once.
"""

import json
import os
import socket
import sys
import threading

CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 10.0


def _say(obj):
    os.write(1, (json.dumps(obj, separators=(",", ":")) + "\n").encode())


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _wait_for_go():
    """The first line of stdin (the go); returns what came after it, or None at EOF."""
    buf = b""
    while b"\n" not in buf:
        data = os.read(0, CHUNK)
        if not data:
            return None
        buf += data
    return buf.split(b"\n", 1)[1]


def connect_main(argv):
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: agent connect HOST PORT\n")
        return 2
    host, port = argv[0], int(argv[1])
    rest = _wait_for_go()
    if rest is None:
        return 0  # started ahead and never used
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = "timed out"
        _say({"type": "connect", "ok": False, "error": reason.lower()})
        return 0
    sock.settimeout(None)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    _say({"type": "connect", "ok": True})

    def uplink():
        """stdin -> socket; EOF half-closes it (the service still answers)."""
        try:
            if rest:
                sock.sendall(rest)
            while True:
                data = os.read(0, CHUNK)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the service went: the downlink ends too
            except OSError:
                pass

    threading.Thread(target=uplink, daemon=True, name="devloop-port-uplink").start()
    try:
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            _write_all(1, data)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
    return 0
