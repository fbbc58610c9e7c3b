"""The kernel: runs cells and scripts inside the target and speaks the agent protocol.

Requests arrive as JSON lines on the original stdin, events leave as JSON lines on the original
stdout (see "Agent protocol" in docs/ARCHITECTURE.md). Both are dup()ed to private fds at start;
fd 0 becomes /dev/null and fd 1/2 become pipes that forwarder threads turn into `out` events, so
nothing the user's code (or a C extension, or a child process) writes can corrupt the protocol.

Threads: the main thread runs user code (signals, and so KeyboardInterrupt, land there); a
reader thread parses requests (handling interrupt/gpu/shutdown at once, queueing the rest); one
forwarder thread per pipe. Stdlib only, Python 3.8+.
"""

import builtins
import codecs
import collections
import io
import json
import linecache
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import types

from . import display, magics, reaper, shutdown, stdin, tbformat, wire

CHUNK = 64 * 1024          # largest `out` read from a pipe at once
COALESCE_S = 0.005         # writes this close together become one `out` event
KILL_GRACE_S = 2.0         # SIGINT/SIGTERM to a `run` child, then SIGKILL after this long
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__))


def _is_agent_file(filename):
    """True for frames of the agent itself (dropped from the user's tracebacks)."""
    return bool(filename) and os.path.abspath(filename).startswith(_AGENT_DIR + os.sep)


def installed_packages():
    """{canonical name: version} of the importable distributions, read from the *.dist-info /
    *.egg-info folder names on sys.path (the file is read only where a name lacks the version).
    No importlib.metadata: importing it and walking its finders cost ~40 ms of every kernel start."""
    found = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip, a missing folder
            continue
        for base in names:
            if base.endswith(".dist-info"):
                stem = base[: -len(".dist-info")]
            elif base.endswith(".egg-info"):
                stem = base[: -len(".egg-info")]
            else:
                continue
            name, _, version = stem.partition("-")
            version = version.split("-py", 1)[0]  # foo-1.0-py3.8.egg-info
            if not version:
                name, version = _metadata_name_version(os.path.join(entry or ".", base), name)
            if not name or not version:
                continue
            key = "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))
            found.setdefault(key, version)  # the first on sys.path is the one imported
    return found


def _metadata_name_version(path, name):
    """(Name, Version) from a dist's METADATA / PKG-INFO header (an egg-info without a version)."""
    for candidate in (os.path.join(path, "METADATA"), os.path.join(path, "PKG-INFO"), path):
        try:
            with open(candidate, encoding="utf-8", errors="replace") as fh:
                fields = {}
                for line in fh:
                    if not line.strip():
                        break
                    key, sep, value = line.partition(":")
                    if sep and key in ("Name", "Version"):
                        fields[key] = value.strip()
                return fields.get("Name", name), fields.get("Version", "")
        except OSError:
            continue
    return name, ""



_PRCTL = []  # [prctl or None], looked up on the first script run


def _die_with_parent():
    """A preexec_fn that makes a run child receive SIGKILL when the kernel dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG): a script must not outlive its kernel holding the GPU. None
    where prctl is not available."""
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (ImportError, OSError, AttributeError):
            _PRCTL.append(None)
    prctl = _PRCTL[0]
    if prctl is None:
        return None
    parent = os.getpid()

    def arm():
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the kernel died before the line above ran
            os._exit(137)
    return arm


class Protocol:
    """Writes events as JSON lines to the front end, one whole line at a time.

    Each event gets a sequence number (`seq`, the first key). `write` is the attached front
    end's writer, or None while nobody is attached (a session kernel); a `journal` keeps events
    for replay on the next attach. A write that fails calls `on_broken(write)` once."""

    def __init__(self, write, on_broken, journal=None):
        self.write = write
        self.lock = threading.Lock()
        self.on_broken = on_broken
        self.journal = journal
        self.seq = 0

    def emit(self, event):
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        with self.lock:
            self.seq += 1
            line = ('{"seq":%d,%s\n' % (self.seq, body[1:])) if len(body) > 2 else \
                ('{"seq":%d}\n' % self.seq)
            data = line.encode("utf-8", "backslashreplace")  # a lone surrogate becomes a \\u escape
            write = self.write
            if self.journal is not None:
                self.journal.add(self.seq, event.get("type"), data, write is None)
            if write is None:
                return
            try:
                write(data)
            except OSError:
                self.write = None
                self.on_broken(write)

    def log(self, level, message):
        self.emit({"type": "log", "level": level, "message": message})


def fd_writer(fd):
    """A writer for Protocol that puts all of `data` on file descriptor `fd`."""
    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


class Forwarder:
    """Reads one of the user's pipes (fd 1 or 2) and emits its bytes as `out` events.

    `drain()` marks a point in the stream with a sentinel and waits until the thread has read
    up to it, so every byte written before the mark is on the protocol before `done` (children
    that keep the pipe open cannot hold `done` up: nothing waits for EOF).
    """

    def __init__(self, stream, read_fd, write_fd, token, proto, current_id):
        self.stream = stream
        self.read_fd = read_fd
        self.write_fd = write_fd  # private, non-inheritable writer for the sentinel
        self.prefix = b"\x00devloop-drain-" + token + b"-"
        self.proto = proto
        self.current_id = current_id
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.seen = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="devloop-" + stream, daemon=True)

    def start(self):
        self.thread.start()

    def drain(self, seq):
        os.write(self.write_fd, self.prefix + str(seq).encode() + b"\x00")
        with self.cond:
            while self.seen < seq and self.thread.is_alive():
                self.cond.wait(0.5)

    def _send(self, data, final=False):
        text = self.decoder.decode(data, final)
        if text:
            rid, where = self.current_id()
            event = {"type": "out", "id": rid, "stream": self.stream, "data": text}
            if where is not None:  # [file, cell]: a front end that did not send it still knows
                event["cell"] = where
            self.proto.emit(event)

    def _loop(self):
        carry = b""
        while True:
            try:
                data = os.read(self.read_fd, CHUNK)
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
            except OSError:
                data = b""
            if data:
                data = self._gather(data)
            if not data:
                self._send(carry, final=True)
                with self.cond:
                    self.cond.notify_all()
                return
            carry = self._consume(carry + data)

    def _gather(self, data):
        """`data` and whatever else is written within COALESCE_S of its first byte: a line
        printed in pieces (`print("sum", 45)` unbuffered is four writes) is one `out` event.
        Output is held back at most COALESCE_S; a drain sentinel ends the wait at once."""
        deadline = time.monotonic() + COALESCE_S
        while len(data) < CHUNK and self.prefix[:8] not in data[-64:]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ready = select.select([self.read_fd], [], [], left)[0]
                more = os.read(self.read_fd, CHUNK - len(data)) if ready else b""
            except (OSError, ValueError):
                break
            if not more:  # the window ended (or EOF: the next read sees it again)
                break
            data += more
        return data

    def _consume(self, buf):
        """Forward `buf` up to any sentinel; return the tail that may start a sentinel."""
        while True:
            i = buf.find(self.prefix)
            if i < 0:
                break
            start = i + len(self.prefix)
            end = buf.find(b"\x00", start)
            if end < 0:
                if len(buf) - start <= 20:  # the rest of the sentinel is on its way
                    self._send(buf[:i])
                    return buf[i:]
                self._send(buf[:start])  # looked like one, is not
                buf = buf[start:]
                continue
            digits = buf[start:end]
            if not digits.isdigit():
                self._send(buf[:start])
                buf = buf[start:]
                continue
            self._send(buf[:i], final=True)
            with self.cond:
                self.seen = max(self.seen, int(digits))
                self.cond.notify_all()
            buf = buf[end + 1:]
        keep = 0  # longest tail of buf that is a head of the sentinel prefix
        tail_has_nul = b"\x00" in buf[-len(self.prefix):]
        for k in range(min(len(self.prefix) - 1, len(buf)) if tail_has_nul else 0, 0, -1):
            if buf.endswith(self.prefix[:k]):
                keep = k
                break
        self._send(buf[:len(buf) - keep])
        return buf[len(buf) - keep:]


class Kernel:
    """The kernel's state: namespace, the request queue, the running cell or child."""

    def __init__(self):
        self.cwd = os.getcwd()
        self.requests = queue.Queue()
        self.current = None            # id of the request being processed (tags `out`)
        self.cell_running = False      # user code runs in the main thread right now
        self.generation = 0            # counts requests: an interrupt targets one of them
        self.check_failed = False      # the request's precheck failed: its cell never started
        self.interrupt_for = -1        # generation an interrupt was sent for
        self.interrupted = False       # the current request was interrupted by the client
        self.child = None              # the `run` child process, if any
        self.child_lock = threading.Lock()
        self.run_epoch = 0             # counts `run` requests received: newer ones win
        self.shutting_down = False
        self.sampler = None
        self.drain_seq = 0
        self.main_ident = threading.get_ident()
        self.namespace = self._fresh_namespace()
        self.results = {}              # {file: {cell: {hash, ok, ms}}} of tagged requests
        self.running = None            # the tagged request running now: {id, tag, started}
        self.last_activity = time.time()
        self.started = time.time()
        self.received_ids = collections.deque(maxlen=256)  # a reattaching client resends the rest
        self.acked_seq = 0  # the last event seq the attached front end said it received
        self.last_argv = None  # the sys.argv an exec request set last
        self.stdin = stdin.Bridge(self)  # input() / sys.stdin ask the front end (stdin.py)

    # -- startup -----------------------------------------------------------------------------

    def setup_fds(self, journal=None):
        """Move the protocol off fd 0/1 and point the user's fd 0/1/2 at /dev/null and pipes.

        With a `journal` (a session kernel) nobody is attached yet: events go to the journal
        until a front end attaches over the session socket (see daemon.py)."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        if journal is None:
            proto_fd = os.dup(1)      # os.dup gives non-inheritable fds: children never see them
            self.request_fd = os.dup(0)
        self.crash_fd = os.dup(2)     # the channel's stderr: where a segfault's traceback goes
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if journal is None:
            self.proto = Protocol(fd_writer(proto_fd), self._client_gone)
        else:
            self.proto = Protocol(None, self._connection_broken, journal)
        token = os.urandom(8).hex().encode()
        self.forwarders = []
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)     # inheritable: print, C code and child processes write here
            self.forwarders.append(
                Forwarder(stream, read_fd, write_fd, token, self.proto, self._current_where))
        sys.stdout = io.open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                             closefd=False)  # buffering=1: line buffered, so print() shows up
        sys.stderr = io.open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                             closefd=False)
        sys.stdin = io.open(0, "r", encoding="utf-8", closefd=False)
        self.wrappers = (sys.stdout, sys.stderr)  # flushed at every drain, even if replaced
        try:
            import faulthandler
            self.crash_file = io.open(self.crash_fd, "w", closefd=False)
            faulthandler.enable(file=self.crash_file, all_threads=True)
        except Exception:  # noqa: BLE001 - crash tracebacks are a nicety
            pass
        for forwarder in self.forwarders:
            forwarder.start()

    def _fresh_namespace(self):
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = module  # pickle finds classes defined in cells here
        return module.__dict__

    def install_signals(self):
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        """KeyboardInterrupt only in the cell an `interrupt` was meant for (a SIGINT from
        elsewhere, or one that arrives as the cell ends, is ignored). A cell may install its
        own SIGINT handler: `interrupt` then calls that one, e.g. for a graceful stop."""
        if self.cell_running and self.interrupt_for == self.generation:
            raise KeyboardInterrupt

    def _on_sigterm(self, signum, frame):
        """Only while a `run` child lives (the main thread then waits in waitpid, so this runs
        at once): take its process group down too. Otherwise SIGTERM keeps its default action,
        which a Python handler would defer until a long C call in a cell returns."""
        self._kill_group_now()
        os._exit(128 + signum)

    def _client_gone(self, write=None):
        """The protocol stream is closed: nobody listens, so stop everything and leave."""
        self._kill_group_now()
        os._exit(0)

    def _connection_broken(self, write):
        """A session kernel's front end went away mid-write: nothing to do here (Protocol stops
        writing to it, and its reader sees the end and detaches it); the work goes on."""

    def _kill_group_now(self):
        """SIGKILL the `run` child's group without waiting (the process is about to exit)."""
        child = self.child
        if child is not None:
            self._signal_group(child, signal.SIGKILL)

    # -- requests ----------------------------------------------------------------------------

    def read_requests(self, stream=None, on_eof=None):
        """Reader thread: parse request lines; interrupt/gpu/shutdown act now, the rest queue.

        `stream`: the attached front end's request stream (default: the original stdin); at
        its end `on_eof()` runs (default: shut down -- the one client of a plain kernel left)."""
        if stream is None:
            stream = io.open(self.request_fd, "rb", closefd=False)
        for raw in iter(stream.readline, b""):
            if not raw.strip():
                continue
            try:
                req = json.loads(raw.decode("utf-8", "replace"))
                if not isinstance(req, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self.proto.log("warning", "bad request line ignored (%s): %.200r" % (exc, raw))
                continue
            op = req.get("op")
            if req.get("id") is not None:
                self.received_ids.append(req.get("id"))
            if op == "interrupt":
                self.interrupt()
            elif op == "gpu":
                self.gpu(req)
            elif op == "shutdown":
                self.shutdown_now()
            elif op == "input_reply":  # a line for the cell waiting in input()
                self.stdin.answer(req)
            elif op == "detach":
                break
            elif op == "ack":  # what the front end has received: a detach replays from here
                try:
                    self.acked_seq = max(self.acked_seq, int(req.get("seq") or 0))
                except (TypeError, ValueError):
                    pass
            else:
                if op == "run":
                    with self.child_lock:
                        self.run_epoch += 1
                        req["_epoch"] = self.run_epoch
                    self._stop_child(signal.SIGTERM, KILL_GRACE_S)  # a new run replaces the old
                self.requests.put(req)
        if on_eof is None:
            self.shutdown_now()  # EOF: the client is gone
        else:
            on_eof()

    def interrupt(self):
        with self.child_lock:
            child = self.child
        if child is not None:
            self.interrupted = True
            self._signal_group(child, signal.SIGINT)
            threading.Thread(target=self._kill_later, args=(child, KILL_GRACE_S),
                             daemon=True).start()
        elif self.cell_running:
            self.interrupted = True
            self.interrupt_for = self.generation
            signal.pthread_kill(self.main_ident, signal.SIGINT)  # lands in the main thread

    def shutdown_now(self):
        """Stop sampling and the `run` child; exit at once if user code is busy, else cleanly."""
        self._stop_sampler()
        self.shutting_down = True  # set before looking at cell_running / child: see exec_cell
        self._stop_child(signal.SIGTERM, 0.5)
        if self.cell_running:
            with self.proto.lock:  # never leave half a line behind
                os._exit(0)
        self.requests.put({"op": "shutdown"})

    def serve(self):
        """Main thread: process queued requests one by one until shutdown."""
        while True:
            req = self.requests.get()
            op = req.get("op")
            if op == "shutdown" or self.shutting_down:
                self._finish_request()
                return 0
            handler = {"exec": self.exec_cell, "run": self.run_script, "reset": self.reset,
                       "purge": self.purge, "check": self.check_cells,
                       "forget": self.forget_names}.get(op)
            if handler is None:
                self.proto.log("warning", "unknown request op %r ignored" % (op,))
                continue
            self.generation += 1
            self.interrupted = False
            self.check_failed = False
            self.current = req.get("id")
            tag = req.get("tag") if isinstance(req.get("tag"), dict) else None
            self.running = {"id": self.current, "tag": tag, "started": time.time()} if tag else None
            self.last_activity = time.time()
            started = time.monotonic()
            try:
                ok, exit_code = handler(req)
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - a kernel bug (or a
                # stray SIGINT under a handler a cell installed) must not kill the kernel
                self.proto.log("warning", "agent error in %s: %s" % (op, "".join(
                    traceback.format_exception_only(type(exc), exc)).strip()))
                ok, exit_code = False, None
            self._finish_request()
            ms = round((time.monotonic() - started) * 1000.0, 3)
            if tag and not self.check_failed:  # a cell that never started keeps its last result
                self._record(tag, ok, ms)
            self.running = None
            self.last_activity = time.time()
            if op in ("exec", "run") or req.get("id") is not None:
                done = {"type": "done", "id": req.get("id"), "ok": ok, "ms": ms, "exit_code": exit_code}
                if self.check_failed:
                    done["checked"] = False
                self.proto.emit(done)
            self.current = None

    def _finish_request(self):
        """Flush Python's buffers, then drain both pipes: every `out` precedes `done`."""
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) + self.wrappers:
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - user code may have closed or replaced them
                pass
        self.drain_seq += 1
        for forwarder in self.forwarders:
            forwarder.drain(self.drain_seq)

    # -- exec --------------------------------------------------------------------------------

    def exec_cell(self, req):
        rid = req.get("id")
        precheck = req.get("precheck")
        if isinstance(precheck, dict) and not self._precheck(rid, precheck):
            self.check_failed = True
            return False, None
        code = req.get("code") or ""
        filename = req.get("filename") or "<cell>"
        first_line = max(int(req.get("first_line") or 1), 1)
        path = os.path.join(self.cwd, filename)
        argv = req.get("argv")
        if isinstance(argv, list) and argv:
            if argv != self.last_argv:  # set when it changed: a cell may set sys.argv for the next
                sys.argv = [str(a) for a in argv]
                self.last_argv = list(argv)
        elif len(sys.argv) == 1:  # argparse in a cell sees the user's file, not the agent's argv
            sys.argv[0] = path
        self.namespace["__file__"] = path
        self.namespace["__name__"] = "__main__"
        self._remember_source(filename, path, code, first_line)
        try:
            compiled = magics.compile_cell(code, filename, first_line, magics.for_kernel(self),
                                           display.compile_cell)  # (body, last expr)
        except (SyntaxError, ValueError, OverflowError) as exc:
            self._report(rid, exc)
            return False, None
        try:
            try:
                self.cell_running = True
                self.stdin.install()
                if self.shutting_down:  # shutdown came as this cell was about to start
                    return False, None
                display.run_cell(self, compiled, self.namespace)  # + last value, open figures
            finally:
                self.cell_running = False
        except SystemExit as exc:  # sys.exit(): the pass ends with this code; the kernel lives on
            code = exit_status(exc.code)
            return code == 0, code
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt is reported too
            self._report(rid, exc)
            return False, None
        return True, None

    def _remember_source(self, filename, path, code, first_line):
        """Let linecache show the cell's lines even when the synced file is older or missing."""
        try:
            with io.open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.readlines()
        except OSError:
            lines = []
        cell = code.splitlines(True)
        if cell and not cell[-1].endswith("\n"):
            cell[-1] += "\n"
        lines = lines + ["\n"] * max(0, first_line - 1 + len(cell) - len(lines))
        lines[first_line - 1:first_line - 1 + len(cell)] = cell
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)

    def _report(self, rid, exc):
        """Emit `error`: the exception, the user's frames only, and the formatted traceback --
        bounded (tbformat): a 300,000-frame recursion costs milliseconds, not minutes."""
        frames, text = tbformat.describe(exc, skip=_is_agent_file)
        if isinstance(exc, SyntaxError) and exc.filename:
            frames.append({"file": exc.filename, "line": exc.lineno, "name": "<module>"})
        if isinstance(exc, SystemExit):
            message = "" if exc.code is None else tbformat.message(exc.code)
        elif isinstance(exc, SyntaxError) and exc.msg:
            message = tbformat.message(exc.msg)  # the location is in frames already
        else:
            message = tbformat.message(exc) + tbformat.suggestion(exc)  # "Did you mean: 'x'?"
        self.proto.emit({"type": "error", "id": rid, "etype": type(exc).__name__,
                         "message": message, "frames": frames, "traceback": text})

    # -- run ---------------------------------------------------------------------------------
    # (the child is forked and waited for by the same long-lived thread: PR_SET_PDEATHSIG fires
    # when that thread ends, which is only when the kernel process dies)

    def run_script(self, req):
        rid = req.get("id")
        argv = [str(a) for a in (req.get("argv") or [])]
        with self.child_lock:
            superseded = req.get("_epoch", 0) < self.run_epoch
        if superseded:  # a newer run is queued behind this one: never start it
            self.proto.log("info", "run %r skipped: a newer run replaced it" % (rid,))
            return False, None
        env = dict(os.environ)
        for key, value in (req.get("env") or {}).items():
            if value is None:
                env.pop(str(key), None)  # null unsets a variable
            else:
                env[str(key)] = str(value)
        pass_fds, started, figures_done = display.script_env(self, env)  # plt.show() in the script
        try:
            child = subprocess.Popen(argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent(),
                                     pass_fds=pass_fds)
        except (OSError, ValueError) as exc:
            started()
            self._report(rid, exc)
            return False, None
        started()
        with self.child_lock:
            self.child = child
            superseded = req.get("_epoch", 0) < self.run_epoch or self.shutting_down
        previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        if superseded:  # a newer run arrived while this one was starting
            self._stop_child(signal.SIGTERM, KILL_GRACE_S)
        try:
            code = child.wait()
        finally:
            with self.child_lock:
                self.child = None
            signal.signal(signal.SIGTERM, previous_sigterm)
            figures_done()
        if self.interrupted:
            self.proto.emit({"type": "error", "id": rid, "etype": "KeyboardInterrupt",
                             "message": "", "frames": [], "traceback": "KeyboardInterrupt\n"})
        return code == 0, code

    def _signal_group(self, child, sig):
        try:
            os.killpg(child.pid, sig)  # the child leads its own group (start_new_session)
        except OSError:
            pass

    def _kill_later(self, child, grace):
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal_group(child, signal.SIGKILL)

    def _stop_child(self, sig, grace):
        """Stop the `run` child's whole process group: `sig`, then SIGKILL after `grace` s."""
        with self.child_lock:
            child = self.child
        if child is None:
            return
        if sig != signal.SIGKILL:
            self._signal_group(child, sig)
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(child, signal.SIGKILL)
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass

    # -- reset, purge, gpu -------------------------------------------------------------------

    def reset(self, req):
        self.namespace = self._fresh_namespace()
        self.results = {}
        return True, None

    def check_cells(self, req):
        """Compile every cell a pass plans ({code, filename, first_line}; magics transformed)
        before any of them runs: the first syntax error is reported at once, nothing runs."""
        return self._compile_all(req.get("id"), req.get("cells") or []), None

    def _compile_all(self, rid, cells):
        for cell in cells:
            try:
                magics.compile_cell(cell.get("code") or "", cell.get("filename") or "<cell>",
                                    max(int(cell.get("first_line") or 1), 1),
                                    magics.for_kernel(self), display.compile_cell)
            except (SyntaxError, ValueError, OverflowError) as exc:
                self._report(rid, exc)
                return False
        return True

    def _precheck(self, rid, precheck):
        """A pass's first exec carries its check (one round trip less per save): every planned
        cell compiles, else the error is reported and nothing runs; then the names no cell
        defines any more leave the namespace, and `checked` tells the front end the cell starts."""
        if not self._compile_all(rid, precheck.get("cells") or []):
            return False
        self.forget_names({"names": precheck.get("forget") or []})
        self.proto.emit({"type": wire.EV_CHECKED, "id": rid})
        return True

    def forget_names(self, req):
        """Drop names from the namespace (the ones a rerun cell no longer defines: a pass then
        fails as a fresh run would, not on a stale value)."""
        for name in req.get("names") or []:
            if isinstance(name, str):
                self.namespace.pop(name, None)
        return True, None

    def _current_where(self):
        """(request id, [file, cell] or None) of what runs now: tags the `out` events."""
        running = self.running
        tag = running.get("tag") if running else None
        return self.current, ([tag.get("file"), tag.get("cell")] if tag else None)

    def _record(self, tag, ok, ms):
        """Remember how a tagged cell ended: a front end that attaches later plans from it.
        `n` orders the results: a cell that ran before an earlier cell's last run is stale."""
        file, cell = str(tag.get("file", "")), str(tag.get("cell", ""))
        self.results.setdefault(file, {})[cell] = {"hash": tag.get("hash"), "ok": bool(ok),
                                                   "ms": ms, "at": time.time(), "n": self.generation}

    def status(self):
        """What a front end needs to pick up where the last one left off."""
        return {"pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3],
                "cwd": self.cwd, "results": self.results, "running": self.running,
                "started": self.started, "idle_s": round(time.time() - self.last_activity, 1),
                "seq": self.proto.seq, "received": list(self.received_ids),
                "gpu": getattr(self, "last_gpu", None), "input": self.stdin.waiting}

    def purge(self, req):
        """Drop modules whose file is one of the synced paths, so the next import reloads them."""
        import importlib
        import importlib.util
        wanted = set(os.path.realpath(os.path.join(self.cwd, p)) for p in req.get("paths") or [])
        for path in (p for p in wanted if p.endswith(".py")):
            # a same-size edit within the same second would otherwise load the stale .pyc
            try:
                os.remove(importlib.util.cache_from_source(path))
            except (OSError, ValueError, NotImplementedError):
                pass
        dropped = []
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if file and os.path.realpath(file) in wanted:
                del sys.modules[name]
                dropped.append(name)
        importlib.invalidate_caches()
        linecache.checkcache()
        if dropped:
            self.proto.log("debug", "purged modules: " + ", ".join(sorted(dropped)))
        return True, None

    def gpu(self, req):
        try:
            interval = float(req.get("interval") or 0)
        except (TypeError, ValueError):
            interval = 0.0
        self._stop_sampler()
        if interval <= 0:
            return
        try:
            from . import gpu
            sampler_class = gpu.Sampler
        except Exception:  # noqa: BLE001 - ImportError, or a gpu module without Sampler
            self.proto.emit({"type": "gpu", "available": False,
                             "reason": "gpu sampler not available"})
            return
        try:
            self.sampler = sampler_class(interval, self._emit_gpu)
            self.sampler.start()
        except Exception as exc:  # noqa: BLE001
            self.sampler = None
            self.proto.emit({"type": "gpu", "available": False,
                             "reason": "gpu sampler failed: %s" % _safe_str(exc)})

    def _stop_sampler(self):
        """Stop sampling without holding the reader up for long (nvidia-smi may hang)."""
        sampler, self.sampler = self.sampler, None
        if sampler is None:
            return
        try:
            try:
                sampler.stop(timeout=1.0)
            except TypeError:  # a sampler whose stop() takes no timeout
                sampler.stop()
        except Exception:  # noqa: BLE001
            pass

    def _emit_gpu(self, event):
        event = dict(event)
        event["type"] = "gpu"
        self.last_gpu = event  # what `devloop sessions` shows as the GPU memory held
        self.proto.emit(event)


def exit_status(code):
    """The exit status `python file.py` ends with after `sys.exit(code)`: None is 0, an int is
    taken modulo 256, anything else is printed to stderr (as Python does) and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write("%s\n" % (code,))
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - an unprintable code still ends the pass
        pass
    return 1


def _safe_str(exc):
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return "<unprintable %s>" % type(exc).__name__


def main(argv=None):
    """`python3 agent.pyz kernel`: serve the protocol until shutdown or EOF; exit code 0."""
    kernel = Kernel()
    try:
        kernel.setup_fds()
        kernel.install_signals()
        if kernel.cwd not in sys.path[:1]:
            sys.path.insert(0, kernel.cwd)
        sys.argv = [""]  # as in an interactive interpreter: not the agent's own arguments
        kernel.proto.emit({"type": "ready", "pid": os.getpid(),
                           "python": "%d.%d.%d" % sys.version_info[:3], "cwd": kernel.cwd,
                           "packages": installed_packages()})
    except Exception:  # noqa: BLE001 - fd 2 may be a pipe already: say why on the real stderr
        text = "devloop agent: kernel failed to start\n" + traceback.format_exc()
        os.write(getattr(kernel, "crash_fd", 2), text.encode("utf-8", "replace"))
        return 1
    reaper.become_subreaper()  # daemons a cell starts come back to us: ended below
    threading.Thread(target=kernel.read_requests, name="devloop-requests", daemon=True).start()
    code = kernel.serve()
    kernel._stop_child(signal.SIGKILL, 0)
    shutdown.run_exit_hooks()  # the user's pools end in order first (loky, multiprocessing)
    reaper.end_descendants()
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        # a thread a cell started would keep the interpreter waiting forever: run the
        # user's atexit handlers ourselves and leave without joining it
        import atexit
        getattr(atexit, "_run_exitfuncs", lambda: None)()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)
    return code
