"""A session kernel: the kernel detached from every connection, served on a unix socket.

`python3 agent.pyz kernel --serve` is started by the relay (relay.py) with cwd = the workdir and
one JSON settings line on stdin: {session, secret, agent, idle_stop_s, stop_container}. It
leaves the starting channel behind (its own session; stdio on /dev/null and kernel.log), then:

- a supervisor process (this one) forks the kernel and waits for it, so how the kernel ended
  (exit code or signal) is written to .devloop/session/exit.json even after a SIGKILL or an
  OOM kill; it removes the socket then;
- the kernel listens on .devloop/session/kernel.sock (folder 0700, socket 0600, no TCP). A
  connection's first line is `hello {secret, since, client}`: a wrong secret is refused, a
  right one gets `ready` (the kernel's state: results of the cells it ran, the running one)
  and every event after `since` replayed once (see journal.py), then live events. A second
  front end takes over: the first one gets `detached` and is closed. End of a connection is a
  detach, never a shutdown: work goes on and its events are journaled.
- with nobody attached and nothing running for `idle_stop_s` (0: never) the kernel stops;
  with `stop_container` its supervisor then ends the container's PID 1 (no GPU is held).
"""

import hmac
import json
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time

from . import reaper, shutdown, wire
from .journal import Journal

HELLO_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0  # a front end that stops reading (a sleeping laptop) is detached after this


def ensure_private_dir():
    """.devloop/session as a real folder owned by us, mode 0700 (made if missing); OSError
    otherwise. A symlink, another user's folder or a group/world-writable one is refused or
    fixed: the session's socket and logs must not land where someone else points them."""
    _ensure_dir(wire.STATE_DIR, 0o700)
    _ensure_dir(wire.SESSION_DIR, 0o700)


def _ensure_dir(path, mode):
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError("%s is not a real folder (a link or a file): refusing to use it" % path)
    if st.st_uid != os.getuid():
        raise OSError("%s belongs to another user (uid %d): refusing to use it" % (path, st.st_uid))
    if path == wire.SESSION_DIR and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    elif st.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)


def write_private(path, data):
    """Write a small state file (0600) without following a link planted at its name."""
    tmp = "%s.%s.tmp" % (path, os.urandom(6).hex())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Server:
    """The listening socket and the one attached front end of a session kernel."""

    def __init__(self, kernel, settings):
        self.kernel = kernel
        self.secret = str(settings.get("secret") or "")
        self.session = str(settings.get("session") or "")
        self.agent = str(settings.get("agent") or "")
        self.idle_stop_s = float(settings.get("idle_stop_s") or 0)
        self.conn = None
        self.conn_lock = threading.Lock()
        self.detached_at = 0  # last seq a front end acknowledged before it went away
        self.sock = None

    def listen(self):
        path = wire.SOCKET_PATH
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError("%s exists and is not a socket: refusing to replace it" % path)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket of a kernel that is gone
            else:
                probe.close()
                raise OSError("a session kernel already listens on %s" % path)
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(8)
        self.sock = sock
        self.socket_abs = os.path.abspath(path)

    def accept_forever(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._guarded_handshake, args=(conn,), daemon=True,
                             name="devloop-attach").start()

    def _guarded_handshake(self, conn):
        try:
            self._handshake(conn)
        except Exception as exc:  # noqa: BLE001 - one bad connection never takes the kernel down
            os.write(self.kernel.crash_fd, ("devloop agent: connection failed: %r\n" % (exc,)).encode())
            _close(conn)

    def _handshake(self, conn):
        try:
            conn.settimeout(HELLO_TIMEOUT_S)
            reader = conn.makefile("rb")
            line = reader.readline(1 << 16)
            hello = wire.decode(line)
        except (OSError, ValueError):
            conn.close()
            return
        if hello.get("op") != wire.OP_HELLO or not hmac.compare_digest(
                str(hello.get("secret") or "").encode(), self.secret.encode()):
            try:
                conn.sendall(wire.encode({"type": wire.EV_REFUSED, "reason": "wrong session secret: this "
                                          "session belongs to another devloop front end"}))
            except OSError:
                pass
            conn.close()
            return
        if hello.get("peek"):  # `devloop sessions`: the state, without taking over the front end
            try:
                status = dict(self.kernel.status(), type=wire.EV_STATUS, session=self.session, agent=self.agent,
                              idle_stop_s=self.idle_stop_s, attached=self.conn is not None)
                conn.sendall(wire.encode(status))
            except OSError:
                pass
            _close(conn)
            return
        # blocking reads from here on; a send that stalls (a front end that stopped reading,
        # e.g. a sleeping laptop behind ssh) fails after SEND_TIMEOUT_S and detaches it
        conn.settimeout(None)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", int(SEND_TIMEOUT_S), 0))
        since = hello.get("since")
        self.attach(conn, since if isinstance(since, int) else None, str(hello.get("client") or ""))
        try:
            self.kernel.read_requests(reader, on_eof=lambda: self.detach(conn))
        except (OSError, ValueError):
            self.detach(conn)

    def attach(self, conn, since, client):
        proto = self.kernel.proto
        with proto.lock:
            with self.conn_lock:
                old, self.conn = self.conn, conn
            if old is not None:
                try:
                    old.sendall(wire.encode({"type": wire.EV_DETACHED,
                                             "reason": "another devloop front end attached to this session"}))
                except OSError:
                    pass
                _close(old)
            if since is None:  # a new front end: what no front end acknowledged
                since = self.detached_at if old is None else self.kernel.acked_seq
            ready = dict(self.kernel.status(), type=wire.EV_READY, session=self.session,
                         agent=self.agent, packages=self.kernel.packages,
                         attached=True, since=since, idle_stop_s=self.idle_stop_s)
            try:
                conn.sendall(wire.encode(ready))
                for line in proto.journal.since(since):
                    conn.sendall(line)
            except OSError:
                with self.conn_lock:
                    self.conn = None
                _close(conn)
                return
            self.kernel.acked_seq = since
            proto.write = conn.sendall
            self.kernel.last_activity = time.time()

    def detach(self, conn):
        proto = self.kernel.proto
        with proto.lock:
            with self.conn_lock:
                mine = self.conn is conn
                if mine:
                    self.conn = None
            if mine:
                proto.write = None
                # what was written but not acknowledged may have died in the pipes with the
                # front end: replay it (at least once, marked), never lose it
                self.detached_at = self.kernel.acked_seq
                self.kernel.last_activity = time.time()
        _close(conn)

    def idle_watch(self):
        """Stop the session after idle_stop_s with nobody attached and nothing running."""
        if self.idle_stop_s <= 0:
            return
        while True:
            time.sleep(max(0.2, min(self.idle_stop_s / 4.0, 30.0)))
            k = self.kernel
            with self.conn_lock:
                attached = self.conn is not None
            if attached or k.current is not None or k.child is not None:
                continue
            if time.time() - k.last_activity >= self.idle_stop_s:
                k.proto.log("info", "idle for %.0f s with nobody attached: the session stops" % self.idle_stop_s)
                k.stop_reason = "idle"
                k.shutdown_now()
                return

    def close(self):
        try:
            if self.sock is not None:
                self.sock.close()
            os.unlink(self.socket_abs)
        except OSError:
            pass
        with self.conn_lock:
            conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.sendall(wire.encode({"type": wire.EV_BYE, "reason": getattr(self.kernel, "stop_reason", "shutdown")}))
            except OSError:
                pass
            _close(conn)


def _close(conn):
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def serve_main(argv):
    """Supervisor: read the settings, fork the kernel, record how it ended."""
    try:
        settings = wire.decode(sys.stdin.buffer.readline(1 << 16))
        ensure_private_dir()
    except (OSError, ValueError) as exc:
        sys.stderr.write("devloop agent: cannot start the session: %s\n" % exc)
        return 1
    exit_abs = os.path.abspath(wire.EXIT_FILE)
    socket_abs = os.path.abspath(wire.SOCKET_PATH)
    session_abs = os.path.abspath(wire.SESSION_FILE)
    reaper.become_subreaper()  # a daemon a cell starts (double fork + setsid) is re-parented here
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)  # the kernel and what it starts: one group its supervisor ends
            code = _kernel_main(settings)
        finally:
            os._exit(code)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    status = 0
    while True:  # reap orphans re-parented here as they end; stop when the kernel does
        try:
            done, status = os.waitpid(-1, 0)
        except InterruptedError:  # pragma: no cover
            continue
        except ChildProcessError:  # pragma: no cover - the kernel is always our child
            break
        if done == pid:
            break
    end_group(pid)
    reaper.end_descendants()  # what left the group (daemons): they are our children now
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (
        -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    reason = "exit"
    try:
        with open(os.path.join(os.path.dirname(exit_abs), "stop-reason"), "r") as fh:
            reason = fh.read().strip() or "exit"
        os.unlink(os.path.join(os.path.dirname(exit_abs), "stop-reason"))
    except OSError:
        pass
    try:
        write_private(exit_abs, wire.encode({"session": settings.get("session"), "pid": pid,
                                             "exit_code": code, "reason": reason, "at": time.time()}))
    except OSError:
        pass
    for path in (socket_abs, session_abs):
        try:
            os.unlink(path)
        except OSError:
            pass
    if reason == "idle" and settings.get("stop_container") and os.getpid() != 1:
        try:
            os.kill(1, signal.SIGTERM)  # the container's init (docker --init / the pod's keeper)
        except OSError:
            pass
    return 0


def end_group(pgid, grace=2.0):
    """SIGTERM what the kernel started (its process group), SIGKILL what is left after `grace`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _kernel_main(settings):
    from .kernel import Kernel, installed_packages

    kernel = Kernel()
    journal = Journal(os.path.abspath(wire.EVENTS_LOG))
    server = Server(kernel, settings)
    try:
        server.listen()
        kernel.setup_fds(journal=journal)
        kernel.install_signals()
        if kernel.cwd not in sys.path[:1]:
            sys.path.insert(0, kernel.cwd)
        sys.argv = [""]
        kernel.packages = installed_packages()
        write_private(os.path.abspath(wire.SESSION_FILE), wire.encode({
            "session": server.session, "pid": os.getpid(), "supervisor": os.getppid(),
            "started": kernel.started, "agent": server.agent, "idle_stop_s": server.idle_stop_s,
            "python": "%d.%d.%d" % sys.version_info[:3]}))
    except Exception as exc:  # noqa: BLE001 - the relay reads kernel.log to say why
        os.write(2, ("devloop agent: the session kernel failed to start: %s\n" % exc).encode())
        return 1
    threading.Thread(target=server.accept_forever, name="devloop-accept", daemon=True).start()
    threading.Thread(target=server.idle_watch, name="devloop-idle", daemon=True).start()
    code = kernel.serve()
    kernel._stop_child(signal.SIGKILL, 0)
    shutdown.run_exit_hooks()  # the user's pools end in order before the group is ended
    reason = getattr(kernel, "stop_reason", "shutdown")
    try:
        write_private(os.path.join(os.path.dirname(os.path.abspath(wire.EXIT_FILE)), "stop-reason"),
                      reason.encode())
    except OSError:
        pass
    server.close()
    kernel._finish_request()
    os._exit(code)
