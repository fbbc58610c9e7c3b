"""The SSH target: an existing host reached with paramiko; the agent runs over exec channels.

One verified, authenticated transport per target (`devloop.core.ssh_connect`); every process
(the kernel, a sync receiver, a probe) is one exec channel on it. Each channel's stdout and
stderr are pumped by their own daemon threads into asyncio, so a blocking paramiko read never
holds the event loop.

Every command is wrapped as `exec /bin/sh -c 'echo DEVLOOP-PID $$; cd WD && exec env K=V argv'`:
sshd starts the session's shell in a new session (setsid), so that pid names the session of
everything the process starts, and `kill()` can stop all of it with one `pkill -s`.

When the transport dies, reads and writes on every channel raise `ConnectionLost`; `start()`
again opens a new transport (the session owns the backoff), kills what the old connection left
running on the host, and returns: the session then asks the remote for its manifest and resends
only the difference. Nothing on either side is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import paramiko

from devloop.core.agent_bundle import bundle, bundle_name
from devloop.core.ports.stream import PortRefused, PortStream, ThreadStream, in_thread
from devloop.core.targets import ssh_facts
from devloop.core.ssh_config import Endpoint, resolve_endpoint
from devloop.core.ssh_connect import AuthFailed, Connection, HostKeyChanged, UnknownHostKey, Unreachable, connect
from devloop.core.targets.base import Channel, ConnectionLost, Target, TargetError, TargetInfo
from devloop.core.targets.streamed import StreamedChannel

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Config, Profile

class _QuietRefusals(logging.Filter):
    """paramiko logs a refused direct-tcpip open at ERROR before it raises; with no logging set
    up, Python prints that on stderr, over the app. The refusal is reported as PortRefused."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in str(record.msg)


logging.getLogger("paramiko.transport").addFilter(_QuietRefusals())

PID_MARK = b"DEVLOOP-PID "
MIN_PYTHON = (3, 8)
STDLIB_MODES = ("receive", "manifest", "connect")


def remote_path(path: str) -> str:
    """Shell words for a remote path: `~` and `~/x` expand to $HOME, the rest is quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def wrap_command(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> str:
    """The exec string: announce the pid (= session id), cd, exec the program with its env."""
    for name in env:
        if not name or "=" in name or not (name.replace("_", "a").isalnum() and not name[0].isdigit()):
            raise TargetError(f"environment variable name {name!r} is not valid",
                              hint="use letters, digits and _ (not starting with a digit)")
    inner = "echo DEVLOOP-PID $$"
    if cwd:
        inner += f" && cd {remote_path(cwd)}"
    words = ["exec"]
    if env:
        words.append("env")
        words += [shlex.quote(f"{k}={v}") for k, v in env.items()]
    words += [shlex.quote(a) for a in argv]
    inner += " && " + " ".join(words)
    return "exec /bin/sh -c " + shlex.quote(inner)


def require_host(profile: "Profile") -> None:
    if not profile.host:
        raise TargetError(f"profile {profile.name!r} (kind ssh) has no `host:`",
                          hint="add host: NAME (an alias from ~/.ssh/config, or user@host)")


def connection_lost(ep: Endpoint, hint: str) -> ConnectionLost:
    """The error for a dropped SSH connection, naming where it went."""
    return ConnectionLost(f"the SSH connection to {ep.alias} ({ep.hostname}:{ep.port}) was lost", hint=hint)


def profile_endpoint(profile: "Profile") -> Endpoint:
    """Where an ssh profile connects: its keys over ~/.ssh/config's entry for `host`."""
    try:
        return resolve_endpoint(profile.host, port=profile.port, user=profile.user,
                                identity_file=profile.identity_file, known_hosts=profile.known_hosts)
    except ValueError as exc:
        raise TargetError(f"profile {profile.name!r}: {exc}") from exc


def kill_command(pid: int) -> str:
    """Kill the process's whole session (children in other process groups too), then it."""
    return (f"pkill -KILL -s {pid} 2>/dev/null; kill -KILL -- -{pid} 2>/dev/null; "
            f"kill -KILL {pid} 2>/dev/null; true")


def end_command(pid: int) -> str:
    """What is left of an exited process's session (children it started, one that ignores
    SIGTERM too): SIGTERM, then SIGKILL after ~1 s. Never the bare pid: it may be reused."""
    gone = f"! pgrep -s {pid} >/dev/null 2>&1 && ! kill -0 -- -{pid} 2>/dev/null"
    return (f"pkill -TERM -s {pid} 2>/dev/null; kill -TERM -- -{pid} 2>/dev/null; "
            f"for i in 1 2 3 4 5 6 7 8 9 10; do {gone} && exit 0; sleep 0.1; done; "
            f"pkill -KILL -s {pid} 2>/dev/null; kill -KILL -- -{pid} 2>/dev/null; true")


class SshChannel(StreamedChannel):
    """One exec channel: stdout lines for the protocol, a stderr tail, stdin, exit status."""

    def __init__(self, chan: paramiko.Channel, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.chan = chan
        self.conn = conn
        self.remote_killed = False  # the kill command reached the host
        self._stderr_pump = threading.Thread(target=self._pump_stderr, daemon=True, name="devloop-ssh-stderr")
        self._stderr_pump.start()
        threading.Thread(target=self._pump_stdout, daemon=True, name="devloop-ssh-stdout").start()

    # -- threads ----------------------------------------------------------------------------------
    def _pump_stdout(self) -> None:
        head = b""
        try:
            while True:
                data = self.chan.recv(65536)
                if not data:
                    break
                if self.pid is None:
                    head += data
                    if b"\n" not in head:
                        continue
                    first, _, data = head.partition(b"\n")
                    head = b""
                    if first.startswith(PID_MARK) and first[len(PID_MARK):].strip().isdigit():
                        self.pid = int(first[len(PID_MARK):])
                        self.pid_seen.set()
                    else:  # not our wrapper's line: hand it on
                        data = first + b"\n" + data
                        self.pid = -1
                        self.pid_seen.set()
                    if not data:
                        continue
                self._call(self._reader.feed_data, data)
        except Exception:  # noqa: BLE001 - a read on a dying transport
            pass
        if head:
            self._call(self._reader.feed_data, head)
        self.pid_seen.set()
        lost, code = self._outcome()
        self._stderr_pump.join(1.0)  # its last words belong in stderr_tail() once wait() returns
        self._call(self._finish_ssh, lost, code)

    def _outcome(self) -> tuple[bool, int]:
        """After stdout EOF: the exit code, or whether the transport died under us."""
        transport = self.conn.transport
        while not self.chan.status_event.wait(0.1):
            if not transport.is_active():
                break
        status = self.chan.exit_status if self.chan.exit_status_ready() else -1
        if status != -1 or self.killed:
            return False, status
        # Closed without an exit status: killed by a signal (sshd sends exit-signal, which
        # paramiko drops) or the connection died. The transport thread closes channels just
        # before it marks itself inactive: give it a moment to say which.
        for _ in range(10):
            if not transport.is_active():
                return True, -1
            time.sleep(0.05)
        return False, -1

    def _pump_stderr(self) -> None:
        try:
            while True:
                data = self.chan.recv_stderr(65536)
                if not data:
                    return
                self._stderr.append(data.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001
            return

    def _finish_ssh(self, lost: bool, code: int) -> None:
        self.lost = lost
        self._finish(code)

    # -- Channel ----------------------------------------------------------------------------------
    def _connection_lost(self) -> ConnectionLost:
        return connection_lost(self.conn.endpoint, "devloop reconnects by itself; check the network if it keeps failing")

    async def send(self, data: bytes) -> None:
        if not self.conn.transport.is_active():
            raise self._connection_lost()
        if self.chan.closed or self._finished.done():
            raise BrokenPipeError("the remote process has exited")
        try:
            await asyncio.to_thread(self.chan.sendall, data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not self.conn.transport.is_active():
                raise self._connection_lost() from exc
            raise BrokenPipeError(f"the remote process stopped reading: {exc}") from exc

    async def close_stdin(self) -> None:
        if not self.conn.transport.is_active():
            raise self._connection_lost()
        if self.chan.closed:  # an EOF for a channel sshd freed drops the whole connection
            return
        try:
            await asyncio.to_thread(self.chan.shutdown_write)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    async def kill(self) -> None:
        if self.killed:
            return
        self.killed = True
        if self.conn.transport.is_active():
            # also once the process exited: what it started may live on in its session
            running = not self._finished.done()
            if running:
                await asyncio.to_thread(self.pid_seen.wait, 2.0)
            if self.pid and self.pid > 0:
                command = kill_command(self.pid) if running else end_command(self.pid)
                try:
                    await asyncio.to_thread(run_command, self.conn, command, None, 10.0)
                    self.remote_killed = True
                except (TargetError, OSError, paramiko.SSHException, EOFError):
                    pass
        try:
            self.chan.close()
        except Exception:  # noqa: BLE001
            pass


def run_command(conn: Connection, command: str, stdin: bytes | None = None,
                timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    """Run one short command to completion (blocking): (exit code, stdout, stderr)."""
    try:
        chan = conn.transport.open_session(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectionLost(f"cannot open an SSH channel to {conn.endpoint.alias}: {exc}") from exc
    with chan:
        chan.settimeout(timeout)
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            # stdout to EOF, then stderr (short commands: stderr fits in the channel window)
            for recv, buf in ((chan.recv, out), (chan.recv_stderr, err)):
                while True:
                    data = recv(65536)
                    if not data:
                        break
                    buf += data
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not conn.transport.is_active():
                raise ConnectionLost(f"the SSH connection to {conn.endpoint.alias} dropped: {exc}") from exc
            raise TargetError(f"ssh {conn.endpoint.alias}: command failed: {exc}") from exc
        code = chan.recv_exit_status()
    if code == -1 and not conn.transport.is_active():
        raise ConnectionLost(f"the SSH connection to {conn.endpoint.alias} dropped while running a command")
    return code, bytes(out), bytes(err)


class SshTarget(Target):
    kind = "ssh"

    def __init__(self, profile: "Profile", config: "Config") -> None:
        require_host(profile)
        self.profile = profile
        self.config = config
        self.workdir_spec = profile.workdir or f"~/devloop/{config.project.name}"
        self.python_spec = profile.python or "python3"
        self.conn: Connection | None = None
        self._endpoint: Endpoint | None = None
        self._info: TargetInfo | None = None
        self._bundle_path = ""
        self._lock = asyncio.Lock()
        self._channels: list[SshChannel] = []
        self._orphans: list[int] = []  # remote sessions a dropped connection left running
        self._orphan_kill: asyncio.Future | None = None
        # the probe running beside the first exec when the facts are known (ssh_facts), and the
        # one-time step that applies its verdict
        self._probe: asyncio.Future | None = None
        self._verdict_lock = asyncio.Lock()

    # -- endpoint ---------------------------------------------------------------------------------
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = profile_endpoint(self.profile)
        return self._endpoint

    @property
    def info(self) -> TargetInfo:
        if self._info is None:
            raise TargetError("the ssh target has not been started")
        return self._info

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> TargetInfo:
        async with self._lock:
            if self.conn is not None and self.conn.active and self._info is not None:
                return self._info
            reconnecting = self.conn is not None
            if self.conn is not None:
                self._forget_connection()
            ep = self.endpoint()
            self.conn = await asyncio.to_thread(connect, ep, self.profile.name)
            try:
                known = self._info if reconnecting else self._recorded_info()
                if known is not None:  # speculate: the next exec opens beside the probe
                    self._info, self._bundle_path = known, str(known.details.get("bundle") or "")
                    self._probe = asyncio.ensure_future(asyncio.to_thread(self._prepare))
                else:
                    self._apply(await asyncio.to_thread(self._prepare))
                if reconnecting:  # beside the caller's next exec, not before it (~0.4 s of a reattach)
                    self._orphan_kill = asyncio.ensure_future(asyncio.to_thread(self._kill_orphans))
            except BaseException:
                self.conn.close()
                raise
            return self._info

    def _forget_connection(self) -> None:
        """The old transport is gone: what it ran on the host is remembered, to be killed."""
        assert self.conn is not None
        for ch in self._channels:
            exited = ch._finished.done() and not ch.lost
            if ch.pid and ch.pid > 0 and not exited and not ch.remote_killed:
                self._orphans.append(ch.pid)
        self._channels.clear()
        self.conn.close()

    def _kill_orphans(self) -> None:
        """Processes of the lost connection (an old kernel) hold memory and GPUs: stop them.
        Their state is lost anyway: the session starts a fresh kernel and says so."""
        if not self._orphans or self.conn is None:
            return
        pids, self._orphans = self._orphans, []
        run_command(self.conn, "; ".join(kill_command(p) for p in pids), None, 10.0)

    # -- probe facts ------------------------------------------------------------------------------
    def _facts_key(self) -> dict[str, Any]:
        ep = self.endpoint()
        return {"host": ep.hostname, "port": ep.port, "user": ep.user, "python": self.python_spec,
                "workdir": self.workdir_spec, "bundle": bundle_name()}

    def _recorded_info(self) -> TargetInfo | None:
        facts = ssh_facts.load(self.config.root, self.profile.name, self._facts_key())
        try:
            return TargetInfo(kind="ssh", id=facts["id"], workdir=facts["workdir"], python=facts["python"],
                              details=dict(facts["details"])) if facts else None
        except (KeyError, TypeError):
            return None

    def _apply(self, info: TargetInfo) -> None:
        """Take a probe's facts as the truth and record them for the next attach."""
        self._info, self._bundle_path = info, str(info.details["bundle"])
        details = {k: v for k, v in info.details.items() if k != "bundle_copied"}
        ssh_facts.save(self.config.root, self.profile.name, self._facts_key(),
                       {"id": info.id, "workdir": info.workdir, "python": info.python, "details": details})

    @staticmethod
    def _same_facts(a: TargetInfo, b: TargetInfo) -> bool:
        return (a.python, a.workdir, a.details.get("bundle")) == (b.python, b.workdir, b.details.get("bundle"))

    async def _verdict(self) -> bool:
        """Await the probe started beside the first exec (once) and apply what it found. True
        when the probe had to copy the agent bundle: an exec opened before it found none."""
        async with self._verdict_lock:
            probe, self._probe = self._probe, None
            if probe is None:
                return False
            try:
                info = await probe
            except BaseException:
                ssh_facts.forget(self.config.root, self.profile.name)
                raise
            self._apply(info)
            return bool(info.details.get("bundle_copied"))

    def _prepare(self) -> TargetInfo:
        """One probe: python found and new enough, workdir created, agent bundle present."""
        assert self.conn is not None
        name = bundle_name()
        py = self.python_spec
        py_word = remote_path(py) if py.startswith("~") else shlex.quote(py)
        probe = (
            f"PY={py_word}; "
            'P="$(command -v "$PY" 2>/dev/null)" || { echo "NOPYTHON"; exit 0; }; '
            "echo \"PYTHON:$P\"; "
            "\"$P\" -c 'import sys; print(\"PYVER:%d.%d.%d\" % sys.version_info[:3])'; "
            f"mkdir -p {remote_path(self.workdir_spec)} && cd {remote_path(self.workdir_spec)} && "
            'echo "WORKDIR:$(pwd -P)"; '
            'C="${XDG_CACHE_HOME:-$HOME/.cache}/devloop"; echo "CACHE:$C"; '
            f'if [ -f "$C/{name}" ]; then echo BUNDLE:yes; else echo BUNDLE:no; fi; '
            'echo "HOST:$(uname -n)"'
        )
        code, out, err = run_command(self.conn, probe)
        facts: dict[str, str] = {}
        for line in out.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                facts[key] = value.strip()
            elif line.strip() == "NOPYTHON":
                facts["NOPYTHON"] = "1"
        ep = self.conn.endpoint
        where = f"{ep.user}@{ep.alias}"
        if "NOPYTHON" in facts:
            raise TargetError(
                f"profile {self.profile.name!r}: {self.python_spec!r} was not found on {where}",
                hint="install python3 (3.8+) there, or set `python:` in the profile to its path")
        if "WORKDIR" not in facts:
            raise TargetError(
                f"profile {self.profile.name!r}: cannot create workdir {self.workdir_spec} on {where}: "
                + (err.decode("utf-8", "replace").strip().splitlines() or ["(no message)"])[-1],
                hint="set `workdir:` in the profile to a folder the SSH user may write")
        version = facts.get("PYVER", "")
        try:
            ver = tuple(int(x) for x in version.split("."))
        except ValueError:
            ver = ()
        if not ver or ver[:2] < MIN_PYTHON:
            raise TargetError(
                f"profile {self.profile.name!r}: {facts['PYTHON']} on {where} is Python "
                f"{version or '(did not run)'}; the devloop agent needs 3.8+",
                hint="set `python:` in the profile to a newer interpreter")
        cache = facts["CACHE"]
        bundle_path = f"{cache}/{name}"
        copied = facts.get("BUNDLE") != "yes"
        if copied:
            data, _sha = bundle()
            tmp = shlex.quote(bundle_path + ".tmp")
            code, _, err = run_command(
                self.conn,
                f"mkdir -p {shlex.quote(cache)} && cat > {tmp}.$$ && mv -f {tmp}.$$ {shlex.quote(bundle_path)}",
                data)
            if code != 0:
                raise TargetError(f"cannot copy the devloop agent to {where}:{cache}: "
                                  + err.decode("utf-8", "replace").strip(),
                                  hint="make ~/.cache writable for the SSH user (or set XDG_CACHE_HOME)")
        return TargetInfo(
            kind="ssh", id=facts.get("HOST") or ep.hostname, workdir=facts["WORKDIR"],
            python=facts["PYTHON"],
            details={"host": ep.hostname, "port": ep.port, "user": ep.user, "alias": ep.alias,
                     "python_version": version, "key": self.conn.key_used,
                     "route": ep.describe(), "bundle": bundle_path, "bundle_copied": copied},
        )

    def agent_argv(self, mode: str, *args: str) -> list[str]:
        if not self._bundle_path or self._info is None:
            raise TargetError("the ssh target has not been started")
        # receive/manifest are stdlib-only: -S skips site-packages discovery (~100 ms per sync
        # on a busy host); the kernel and gpu modes need the user's packages (pynvml).
        flags = ["-S", "-u"] if mode in STDLIB_MODES else ["-u"]
        return [self._info.python, *flags, self._bundle_path, mode, *args]

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> Channel:
        conn = self.conn
        if conn is None or self._info is None:
            raise TargetError("the ssh target has not been started")
        if not conn.active:
            raise ConnectionLost(f"the SSH connection to {conn.endpoint.alias} was lost")
        full_env = {"PYTHONUNBUFFERED": "1", **dict(self.profile.env or {}), **dict(env or {})}

        def open_exec(command: str) -> paramiko.Channel:
            try:
                chan = conn.transport.open_session(timeout=conn.endpoint.connect_timeout)
                chan.exec_command(command)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if not conn.active:
                    raise ConnectionLost(f"the SSH connection to {conn.endpoint.alias} was lost") from exc
                raise TargetError(f"ssh {conn.endpoint.alias}: cannot start {argv[0]!r}: {exc}",
                                  hint="the server may limit sessions (MaxSessions in sshd_config)") from exc
            return chan

        basis = self._info
        opening = asyncio.ensure_future(asyncio.to_thread(
            open_exec, wrap_command(argv, full_env, cwd or basis.workdir)))
        try:
            copied = await self._verdict()  # a no-op once the facts are verified
        except BaseException:
            await self._discard(opening)
            raise
        if copied or not self._same_facts(basis, self._info):  # it ran on stale facts: redo it
            await self._discard(opening)
            argv = self._rebase(argv, basis, self._info)
            opening = asyncio.ensure_future(asyncio.to_thread(
                open_exec, wrap_command(argv, full_env, cwd or self._info.workdir)))
        chan = await opening
        channel = SshChannel(chan, conn, asyncio.get_running_loop())
        self._channels = [c for c in self._channels if not c._finished.done() or c.lost] + [channel]
        return channel

    @staticmethod
    async def _discard(opening: asyncio.Future) -> None:
        """Close an exec opened on facts the probe did not confirm (its process sees EOF and a hangup)."""
        with contextlib.suppress(BaseException):
            chan = await opening
            chan.close()

    @staticmethod
    def _rebase(argv: Sequence[str], old: TargetInfo, new: TargetInfo) -> list[str]:
        """argv built from `old` facts (agent_argv), rewritten for the facts the probe found."""
        swap = {old.python: new.python, str(old.details.get("bundle")): str(new.details.get("bundle"))}
        return [swap.get(a, a) for a in argv]

    native_ports = True  # direct-tcpip: as fast as `ssh -L` (benchmarks/bench_ports.py), no process

    async def open_port(self, host: str, port: int) -> PortStream:
        """A direct-tcpip channel on the session's transport (sshd connects on the host)."""
        conn = self.conn
        if conn is None or not conn.active:
            raise ConnectionLost("the SSH connection is down (devloop reconnects by itself)")

        def open_channel() -> paramiko.Channel:
            try:
                return conn.transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0),
                                                   timeout=conn.endpoint.connect_timeout)
            except paramiko.ChannelException as exc:
                raise PortRefused(f"{exc.text.lower() if exc.text else 'refused'} (sshd could not "
                                  f"connect to {host}:{port})") from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if not conn.active:
                    raise ConnectionLost(f"the SSH connection to {conn.endpoint.alias} was lost") from exc
                raise TargetError(f"ssh {conn.endpoint.alias}: cannot open a forwarded connection "
                                  f"to {host}:{port}: {exc}",
                                  hint="the server may forbid it (AllowTcpForwarding in sshd_config)") from exc

        chan = await in_thread(open_channel)
        return ThreadStream(chan, asyncio.get_running_loop(), name="ssh-port")

    async def alive(self) -> bool:
        return self.conn is not None and self.conn.active

    async def detach(self) -> None:
        """A session kernel runs in its own session on the host: closing our channels and the
        connection (what stop() does on a host) leaves it running."""
        await self.stop()

    async def stop(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:  # a probe nobody waited for (no exec followed the start)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(probe, 10)
        if self._orphan_kill is not None:  # let a kill of the old connection's processes finish
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._orphan_kill, 10)
            self._orphan_kill = None
        async with self._lock:
            conn, self.conn = self.conn, None
            if conn is None:
                return
            channels, self._channels = self._channels, []
            for ch in channels:
                if not ch._finished.done():
                    await ch.kill()
            conn.close()

    # -- doctor -----------------------------------------------------------------------------------
    async def doctor_checks(self) -> list[tuple[str, bool, str]]:
        """(check, ok, detail) for `devloop doctor`: reachable, authenticated, python, GPUs."""
        checks: list[tuple[str, bool, str]] = []
        try:
            ep = self.endpoint()
        except TargetError as exc:
            return [("ssh config", False, str(exc))]
        try:
            await self.start()
        except Unreachable as exc:
            return [("reachable", False, str(exc)),
                    ("authenticated", False, "not tried: the host was not reached")]
        except (UnknownHostKey, HostKeyChanged) as exc:
            return [("reachable", True, f"{ep.describe()}"),
                    ("host key", False, str(exc)),
                    ("authenticated", False, "not tried: the host key is not trusted")]
        except AuthFailed as exc:
            return [("reachable", True, f"{ep.describe()}"),
                    ("authenticated", False, str(exc))]
        except TargetError as exc:
            conn_ok = self.conn is not None
            checks += [("reachable", True, ep.describe()),
                       ("authenticated", conn_ok, "as " + ep.user if conn_ok else "")]
            checks.append(("python found", False, str(exc)))
            return checks
        info = self.info
        checks.append(("reachable", True, str(info.details.get("route", ep.describe()))))
        checks.append(("authenticated", True, f"as {ep.user} with {info.details.get('key', '?')}"))
        checks.append(("python found", True, f"{info.python} (Python {info.details.get('python_version')})"))
        checks.append(await self._gpu_check())
        return checks

    async def _gpu_check(self) -> tuple[str, bool, str]:
        try:
            channel = await self.spawn(self.agent_argv("gpu"))
            await channel.close_stdin()
            line = await asyncio.wait_for(channel.readline(), 30)
            await asyncio.wait_for(channel.wait(), 10)
        except (TargetError, asyncio.TimeoutError) as exc:
            return ("GPUs seen", False, f"the agent's gpu mode failed: {exc}")
        try:
            sample: dict[str, Any] = json.loads(line)
        except ValueError:
            return ("GPUs seen", False, f"the agent's gpu mode answered {line[:120]!r}")
        if not sample.get("available"):
            return ("GPUs seen", False, f"no GPU: {sample.get('reason', 'unknown reason')}")
        names = [str(g.get("name", "?")) for g in sample.get("gpus") or []]
        return ("GPUs seen", True, f"{len(names)} via {sample.get('source', '?')}: {', '.join(names)}")
