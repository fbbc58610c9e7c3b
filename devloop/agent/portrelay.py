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
    if argv == ["--mux"]:
        return mux_main()
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: agent connect HOST PORT | agent connect --mux\n")
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


# ---------------------------------------------------------------------------------------------
# `connect --mux`: many forwarded connections over one exec channel (what the front end uses).
#
# Frames both ways: op (1 byte), stream id (4), length (4, big-endian), payload.
#   OPEN    front end -> agent   payload "HOST PORT": connect (on a thread of its own)
#   OPENED  agent -> front end   connected;  REFUSED: payload = why (nothing listens there)
#   DATA    both ways            bytes of the stream
#   EOF     both ways            the sender's side finished (a half-close)
#   CLOSE   both ways            the stream is gone (the front end: done with it)
#   ACK     both ways            payload = 4-byte count: that many DATA bytes were delivered
#   NOP     front end -> agent   (op 0, stream 0) nothing: sent while connections wait for data
#                                (a Kubernetes exec stream was seen to stall until stdin moved)
# Each side sends at most WINDOW unacknowledged DATA bytes per stream, so one slow reader holds
# its own stream, never the channel or the memory of either side.

OPEN, OPENED, REFUSED, DATA, EOF, CLOSE, ACK = 1, 2, 3, 4, 5, 6, 7
WINDOW = 4 * 1024 * 1024
FRAME = 128 * 1024


class _Out(object):
    """stdout, one frame at a time."""

    def __init__(self):
        self.lock = threading.Lock()

    def send(self, op, sid, payload=b""):
        import struct

        head = struct.pack(">BII", op, sid, len(payload))
        with self.lock:
            _write_all(1, head + payload if len(payload) < 65536 else head)
            if len(payload) >= 65536:
                _write_all(1, payload)


class _Stream(object):
    def __init__(self, sid):
        self.sid = sid
        self.sock = None
        self.cv = threading.Condition()
        self.credit = WINDOW  # DATA bytes we may still send to the front end
        self.queue = []  # DATA from the front end, for the socket (None: its EOF)
        self.closed = False

    def shut(self):
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass


def _serve_stream(st, host, port, out, streams, lock):
    import struct

    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc) or type(exc).__name__)
        with lock:
            streams.pop(st.sid, None)
        out.send(REFUSED, st.sid, reason.lower().encode("utf-8", "replace"))
        return
    sock.settimeout(None)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    st.sock = sock
    if st.closed:  # the front end gave up while we connected
        st.shut()
        return
    out.send(OPENED, st.sid)

    def uplink():
        """front end -> socket, acknowledged as written."""
        while True:
            with st.cv:
                while not st.queue and not st.closed:
                    st.cv.wait()
                if st.closed:
                    return
                data = st.queue.pop(0)
            if data is None:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                sock.sendall(data)
            except OSError:
                out.send(CLOSE, st.sid)
                st.shut()
                return
            out.send(ACK, st.sid, struct.pack(">I", len(data)))

    threading.Thread(target=uplink, daemon=True).start()
    try:
        while True:
            with st.cv:
                while st.credit <= 0 and not st.closed:
                    st.cv.wait()
                if st.closed:
                    return
                n = min(FRAME, st.credit)
            data = sock.recv(n)
            if not data:
                out.send(EOF, st.sid)
                return
            with st.cv:
                st.credit -= len(data)
            out.send(DATA, st.sid, data)
    except OSError:
        if not st.closed:
            out.send(CLOSE, st.sid)


def mux_main():
    import struct

    out = _Out()
    streams = {}
    lock = threading.Lock()
    buf = bytearray()
    head = struct.Struct(">BII")
    while True:
        data = os.read(0, 1 << 20)
        if not data:
            break
        buf += data
        while len(buf) >= head.size:
            op, sid, size = head.unpack_from(buf)
            if len(buf) < head.size + size:
                break
            payload = bytes(buf[head.size:head.size + size])
            del buf[:head.size + size]
            with lock:
                st = streams.get(sid)
            if op == OPEN and st is None:
                words = payload.decode("utf-8", "replace").split()
                st = _Stream(sid)
                with lock:
                    streams[sid] = st
                try:
                    host, port = words[0], int(words[1])
                except (IndexError, ValueError):
                    with lock:
                        streams.pop(sid, None)
                    out.send(REFUSED, sid, b"bad open request")
                    continue
                threading.Thread(target=_serve_stream, args=(st, host, port, out, streams, lock),
                                 daemon=True).start()
            elif st is None:
                continue  # a stream that ended already
            elif op == DATA or op == EOF:
                with st.cv:
                    st.queue.append(payload if op == DATA else None)
                    st.cv.notify_all()
            elif op == ACK:
                with st.cv:
                    st.credit += struct.unpack(">I", payload)[0]
                    st.cv.notify_all()
            elif op == CLOSE:
                with lock:
                    streams.pop(sid, None)
                st.shut()
    with lock:  # the front end went: every connection ends with it
        left = list(streams.values())
        streams.clear()
    for st in left:
        st.shut()
    return 0
