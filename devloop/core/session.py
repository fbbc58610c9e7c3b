"""The loop: watch -> sync -> reparse -> plan -> rerun, reported as events.

One Session drives one file on one target. Every front end (`devloop run`, `watch`, `up`) calls
the same coroutines and listens to the same events; nothing here knows who listens.

Rules the loop keeps:
- unchanged cells before an edit never rerun (the kernel keeps their state);
- one pass at a time; a save that changes the running cell or one before it interrupts the pass
  (its result would be stale), a save to a later cell waits for it;
- a dead kernel (os._exit, segfault, dropped connection) is reported and the next pass starts a
  fresh one, with every cell marked to rerun (its state is gone);
- a lost target (container removed, ssh dropped) is started again, resynced from the remote's own
  manifest (only the difference is sent) and reported.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from devloop.core import events as ev
from devloop.core.cells import Cell, ParsedFile, parse_cells, plan_reruns
from devloop.core import pass_prep, session_record
from devloop.core.kernel import ExecResult, KernelClient, SessionClient, SessionRefused
from devloop.core.metrics import MetricParser
from devloop.core.outputs import OutputStore
from devloop.core.sync.pull import Puller
from devloop.core.sync.syncer import Syncer
from devloop.core.targets import create_target
from devloop.core.targets.base import ConnectionLost, TargetError, TargetInfo


class SourceError(Exception):
    """The file to run cannot be read as Python source (missing, not UTF-8)."""


def read_source(path: Path) -> str:
    """The file's text; a clear error (not a traceback) when it is missing or not UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file -- fix: check the path, or set [project].entry in devloop.toml") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder, not a Python file -- fix: name a .py file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}) "
            "-- fix: save the file as UTF-8"
        ) from None


def _module_name(relpath: str) -> str | None:
    """`pkg/utils.py` -> `pkg.utils`; None for non-Python files."""
    if not relpath.endswith(".py"):
        return None
    parts = relpath[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts else None


def _imported_modules(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


OUTPUT_GRACE_S = 1.0  # a non-code file changed this soon after a pass counts as its output


class Session:
    def __init__(self, config: Any, profile: Any, file: Path | None, emit: ev.Emit, verbose: int = 0,
                 mode: str = "plain", forward: tuple[str, ...] = ()) -> None:
        """`mode`: "session" -- the kernel lives on the target beyond this front end (watch, up:
        attach to the profile's live session, else start one); "auto" -- attach when this
        project has a live session for the profile, else a plain kernel (`devloop run`: CI
        leaves nothing behind); "plain" -- a kernel that ends with this Session."""
        self.mode = mode
        self.record: session_record.SessionRecord | None = None
        self._inherited: tuple[int, str, asyncio.Future] | None = None  # a cell another front end runs
        self._joining: SessionClient | None = None  # attaching: its replay arrives before start() returns
        self._unsynced: set[str] = set()  # saves made while the link to the target was down
        #: set when another front end attached to this session: this one stops, touching nothing
        self.taken_over = asyncio.Event()
        self.watch_ready: asyncio.Event | None = None  # set by watch(): its watcher sees saves
        self.config = config
        self.profile = profile
        self.root = Path(config.root).resolve()
        self.file = Path(file).resolve() if file is not None else None
        self.emit = emit
        self.verbose = verbose
        self.target = create_target(profile, config)
        self.kernel: KernelClient | None = None
        self.watching = True
        self.parsed: ParsedFile | None = None
        self.last_ok: list[str | None] = []
        self._target_info: TargetInfo | None = None
        self._pass_lock = asyncio.Lock()
        self._changes_lock = asyncio.Lock()
        self._running_cell: int | None = None
        self._rid_cell: dict[str, int] = {}
        self._launched: list[str] | None = None  # raw output of a script under [run].launcher
        # the scanner, what the target holds, the kept receiver, the local record
        self.syncer = Syncer(self.target, self.root, _sync_excluded(config), profile=profile.name,
                             log=self._log, progress=self._progress_reporter)
        self._pending_changes: set[str] = set()
        self._pass_hashes: list[str] = []  # the cells' code as the running pass started
        self._pass_ended_at = float("-inf")  # monotonic time the last pass ended
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._foreign = False  # a session that refused this front end lives there: close() leaves it
        #: a front end answers InputRequest events (a terminal, a pipe, the TUI's input box);
        #: while False a cell's input() gets end of input at once, with the reason
        self.answers_input = False
        self.defined_names = pass_prep.DefinedNames()  # what each cell left in the namespace
        # forwarded ports live as long as this front end's session (up / watch / attach only:
        # `devloop run` in CI opens no listeners); see devloop/core/ports/
        from devloop.core.ports.forwarder import Forwarder, for_session

        self.ports = for_session(config, profile, tuple(forward), emit) if mode == "session" else Forwarder(())
        self.outputs = OutputStore(self.root)  # images cells show: .devloop/outputs/<run>/
        self.metrics = MetricParser(tuple(getattr(config.ui, "metrics", ()) or ()))  # [ui] metrics
        self._metric_steps: dict[str, int] = {}
        self.puller = Puller.for_config(self.target, config, profile.name, log=self._log)

    # ----------------------------------------------------------------- properties
    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.parsed.cells if self.parsed else ()

    @property
    def info(self) -> TargetInfo | None:
        return self._target_info

    @property
    def relpath(self) -> str:
        assert self.file is not None
        try:
            return self.file.relative_to(self.root).as_posix()
        except ValueError:
            raise SourceError(
                f"{self.file} is outside the project folder {self.root} -- fix: run devloop from the "
                "folder that holds the file, or move the file into the project"
            ) from None

    @property
    def busy(self) -> bool:
        return self._pass_lock.locked()

    @property
    def running_cell(self) -> int | None:
        """The cell running in the kernel now (also one another front end started), if any."""
        if self._running_cell is not None:
            return self._running_cell
        return self._inherited[0] if self._inherited is not None else None

    def _log(self, message: str, level: str = "debug") -> None:
        self.emit(ev.Diagnostic(level=level, message=message))

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> TargetInfo:
        """Start the target, sync the project, start the kernel, parse the file."""
        p = self.profile
        self._log(f"profile {p.name!r} (kind {p.kind}) from {getattr(p, 'source', '?')}", "info")
        if self.file is not None:
            self._reparse()
        self.emit(ev.TargetState(state="starting", profile=p.name, kind=p.kind,
                                 message=f"starting the {p.kind} target"))
        # e.g. kubernetes: scheduling, pulling, creating
        self.target.progress = lambda text: self.emit(ev.TargetState(
            state="starting", profile=p.name, kind=p.kind, message=text))
        if self.mode == "session" or (self.mode == "auto" and self._live_record() is not None):
            self.target.adopt_existing = True  # a live session's pod is reused, not replaced by a new one
        await self.ports.bind()  # a busy local port fails here, before the target starts
        self._target_info = await self.target.start()
        self.ports.start(self.target)
        info = self._target_info
        # e.g. the pod's main container log, beside the agent's output (most targets: none)
        self._spawn(self.target.follow_logs(lambda text: self.emit(ev.Output(cell=-1, stream="stdout", text=text))))
        self._log(f"target {info.kind} {info.id}: workdir {info.workdir}, python {info.python}"
                  + (f", image {info.image} ({info.image_digest})" if info.image else ""), "info")
        # The first sync and the kernel's start both wait on the target: overlap them (the kernel
        # needs only the workdir, which start() made; the cells run after both are done).
        first_sync = asyncio.create_task(self._initial_sync())
        try:
            await self._start_kernel()
        except BaseException:
            first_sync.cancel()
            with contextlib.suppress(BaseException):
                await first_sync
            raise
        await first_sync
        self.emit(ev.TargetState(state="ready", profile=p.name, kind=p.kind,
                                 # "local vm" read as a VM: the local target is this machine
                                 message="this machine" if info.kind == "local" else f"{info.kind} {info.id}"))
        return info

    async def detach(self) -> None:
        """Leave: the session kernel (and its container / pod) goes on running on the target,
        for `devloop attach`, `watch` or `up` to pick up. A plain kernel cannot: it is closed."""
        if not isinstance(self.kernel, SessionClient) or not self.kernel.alive:
            await self.close()
            return
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.ports.close()
        with contextlib.suppress(Exception):
            await self.syncer.flush()
        try:
            await self.kernel.detach()
        except Exception as exc:  # noqa: BLE001 - leaving must go on
            self._log(f"detaching: {exc}")
        with contextlib.suppress(Exception):
            await self.syncer.close()
        try:
            await self.target.detach()
        finally:
            name = self.profile.name
            self.emit(ev.TargetState(
                state="detached", profile=name, kind=self.profile.kind,
                message=f"detached: the session keeps running on the target (`devloop attach -p {name}` or "
                        f"`devloop watch` picks it up; `devloop stop -p {name}` ends it)"))

    async def close(self) -> None:
        """Stop the kernel and the target (removed unless the profile keeps it). Idempotent. A
        session kernel is ended too (and its record removed): nothing is left behind -- unless
        another front end took the session over: it is theirs now, so this one only lets go."""
        if self._closed:
            return
        if self.taken_over.is_set():
            self._closed = True
            for task in list(self._tasks):
                task.cancel()
            await self.ports.close()
            with contextlib.suppress(Exception):
                await self.syncer.close()
            with contextlib.suppress(Exception):
                await self.target.detach()
            self.emit(ev.TargetState(state="stopped", profile=self.profile.name, kind=self.profile.kind,
                                     message="this front end stopped; the session runs on"))
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.ports.close()
        with contextlib.suppress(Exception):  # a record write in flight finishes
            await self.syncer.flush()
        if self.kernel is not None:
            try:
                await self.kernel.shutdown()
            except Exception as exc:  # noqa: BLE001 - closing must go on
                self._log(f"kernel shutdown: {exc}")
        if self.record is not None and (self.mode == "session" or isinstance(self.kernel, SessionClient)):
            if self.kernel is None or not self.kernel.alive and self.kernel.end_reason != "bye":
                await self._stop_session_on_target()
            session_record.remove(self.root, self.profile.name)
        try:
            await self.syncer.close()
        except Exception as exc:  # noqa: BLE001 - closing must go on
            self._log(f"closing the sync receiver: {exc}")
        try:
            if self._foreign:  # not ours to end: let go of the target, remove and kill nothing
                await self.target.detach()
            else:
                await self.target.stop()
        finally:
            self.emit(ev.TargetState(state="stopped", profile=self.profile.name, kind=self.profile.kind))

    # ----------------------------------------------------------------- kernel
    @property
    def attached_existing(self) -> bool:
        """True when this front end attached to a session kernel that was already running."""
        return isinstance(self.kernel, SessionClient) and not self.kernel.fresh

    async def _start_kernel(self) -> None:
        assert self._target_info is not None
        if self.mode == "session" or (self.mode == "auto" and self._live_record() is not None):
            if await self._start_session_kernel():
                return
        env = dict(self.config.run.env or {})
        channel = await self.target.spawn(self.target.agent_argv("kernel"), env=env,
                                          cwd=self._target_info.workdir)
        self.kernel = KernelClient(channel, on_output=self._on_output, on_gpu=self._on_gpu,
                                   on_log=self._on_agent_log, on_display=self._on_display,
                                   on_input=self._on_input)
        ready = await self.kernel.start()
        self.emit(ev.KernelReady(pid=int(ready.get("pid") or 0), python=str(ready.get("python", "")),
                                 cwd=str(ready.get("cwd", "")), packages=dict(ready.get("packages") or {})))
        self._log(f"kernel ready: pid {ready.get('pid')}, python {ready.get('python')}")
        interval = int(getattr(self.config.gpu, "interval_ms", 1000) or 0)
        if interval > 0:
            await self.kernel.notify("gpu", interval=interval / 1000.0)

    # ----------------------------------------------------------------- session kernel
    def _live_record(self) -> session_record.SessionRecord | None:
        if self.record is None:
            self.record = session_record.load(self.root, self.profile.name)
        return self.record

    async def _open_relay(self, start: bool) -> Any:
        """A relay channel to the session kernel (the agent's `attach` mode); a target whose
        connection is gone is started again (it adopts its container / pod) first."""
        argv_args = ("--start",) if start else ()
        env = dict(self.config.run.env or {})
        try:
            return await self.target.spawn(self.target.agent_argv("attach", *argv_args), env=env,
                                           cwd=self._target_info.workdir if self._target_info else None)
        except (ConnectionLost, TargetError, OSError) as exc:
            self._log(f"opening the session relay failed ({exc}); starting the target again")
        self._target_info = await self.target.start()
        await self.syncer.reset()  # what the target holds is asked again
        return await self.target.spawn(self.target.agent_argv("attach", *argv_args), env=env,
                                       cwd=self._target_info.workdir)

    async def _start_session_kernel(self) -> bool:
        """Attach to the profile's session kernel, or start one (mode "session"). False: mode
        "auto" found no live session, so a plain kernel is wanted."""
        from devloop.core.agent_bundle import bundle

        agent = bundle()[1]
        record = self._live_record() or session_record.SessionRecord(profile=self.profile.name)
        idle = getattr(self.profile, "idle_stop_s", None)
        if idle is None:
            idle = getattr(getattr(self.config, "session", None), "idle_stop_s", 7200.0)
        client = SessionClient(
            None, on_output=self._on_output, on_gpu=self._on_gpu, on_log=self._on_agent_log, on_input=self._on_input,
            on_display=self._on_display,
            connect=self._open_relay, secret=record.secret,
            start_settings={"session": record.session, "agent": agent, "idle_stop_s": float(idle or 0),
                            "stop_container": self.target.idle_stop_ends_environment},
            on_link=self._on_link, on_reattached=self._on_reattached)
        self.target.adopt_existing = True
        self._joining = client
        try:
            ready = await client.start(allow_start=self.mode == "session")
        except SessionRefused as exc:
            self._foreign, self.record = True, None  # close() must not end it or forget its record
            raise SessionRefused(exc.message, hint=f"`devloop stop -p {self.profile.name}` ends that session "
                                                   "(its state is lost); then start again") from None
        except TargetError:
            if self.mode == "auto" and client.end_reason == "no_session":
                self._log("the recorded session is gone: a plain kernel runs", "info")
                session_record.remove(self.root, self.profile.name)
                self.record = None
                return False
            raise
        if str(ready.get("agent") or agent) != agent:
            await client.detach()
            self._foreign, self.record = True, None  # close() must not end it or forget its record
            raise SessionRefused(
                f"the session on profile {self.profile.name!r} was started by another devloop version "
                f"(agent {str(ready.get('agent'))[:12]}, this one {agent[:12]})",
                hint=f"`devloop stop -p {self.profile.name}` ends it (its variables are lost); then start again")
        self.kernel, self._joining = client, None
        info = self._target_info
        record.kind, record.agent = self.profile.kind, agent
        record.target, record.workdir = (info.id, info.workdir) if info else ("", "")
        record.file = self._rel_or_none() or ""
        if client.fresh:
            record.started = time.time()
        self.record = record
        await asyncio.to_thread(session_record.save, self.root, record)
        self.emit(ev.KernelReady(pid=int(ready.get("pid") or 0), python=str(ready.get("python", "")),
                                 cwd=str(ready.get("cwd", "")), packages=dict(ready.get("packages") or {})))
        if client.fresh:
            previous = (client.ready_info or {}).get("previous")
            self._log(f"session {record.session[:8]} started on the target (it outlives this front end; "
                      f"idle stop after {float(idle or 0):.0f} s)", "info")
        else:
            kept = self._adopt_results(ready)
            ago = max(0.0, time.time() - float(ready.get("started") or time.time()))
            self.emit(ev.TargetState(
                state="attached", profile=self.profile.name, kind=self.profile.kind,
                message=f"attached to the running session {record.session[:8]} (started {_ago(ago)} ago): "
                        f"{kept} of {len(self.cells)} cells' state kept"))
        interval = int(getattr(self.config.gpu, "interval_ms", 1000) or 0)
        if interval > 0:
            await self.kernel.notify("gpu", interval=interval / 1000.0)
        if isinstance(ready.get("input"), dict):  # a cell waits for a line since before we came
            self._on_input(dict(ready["input"]))
        return True

    def _adopt_results(self, ready: dict) -> int:
        """The target's word on which cells ran ok (with today's code): they do not rerun."""
        results = (ready.get("results") or {}).get(self._rel_or_none() or "", {}) or {}
        self.last_ok = [None] * len(self.cells)
        kept = 0
        last_n = -1  # a cell counts only if it ran after every earlier cell's last run
        broken = False
        for cell in self.cells:
            r = results.get(str(cell.index)) or {}
            n = int(r.get("n", 0) or 0)
            if not broken and r.get("ok") and r.get("hash") == cell.hash and n >= last_n:
                self.last_ok[cell.index] = cell.hash
                kept += 1
                last_n = n
                self.emit(ev.CellState(cell=cell.index, state="ok"))
            else:
                broken = True  # (linear or reactive: kept conservative, the rest reruns)
                if r:
                    self.emit(ev.CellState(cell=cell.index, state="stale"))
        running = ready.get("running") or None
        if running and isinstance(self.kernel, SessionClient):
            tag = running.get("tag") or {}
            if tag.get("file") == self._rel_or_none():
                index = int(tag.get("cell", 0))
                rid = str(running.get("id"))
                self._rid_cell[rid] = index
                self._inherited = (index, str(tag.get("hash", "")), self.kernel.adopt_running(rid))
                self.emit(ev.CellState(cell=index, state="running"))
        return kept

    async def _await_inherited(self) -> None:
        """A cell another front end started is still running: wait for it before planning."""
        if self._inherited is None:
            return
        index, code_hash, fut = self._inherited
        self._inherited = None
        self._running_cell = index
        try:
            result = await fut
        finally:
            self._running_cell = None
        if result.died:
            await self._report_death(index, result)
            return
        if result.error:
            self._emit_error(index, result.error)
        self.emit(ev.CellDone(cell=index, ok=result.ok, ms=round(result.ms, 1)))
        self.emit(ev.CellState(cell=index, state="ok" if result.ok else "failed"))
        if index < len(self.last_ok) and index < len(self.cells):
            self.last_ok[index] = code_hash if result.ok and self.cells[index].hash == code_hash else None

    def _on_link(self, state: str, message: str) -> None:
        if state == "taken_over":
            self.taken_over.set()
            self.emit(ev.TargetState(
                state="detached", profile=self.profile.name, kind=self.profile.kind,
                message="another devloop front end attached to this session and took it over; this one "
                        f"stops (the session goes on; `devloop attach -p {self.profile.name}` takes it back)"))
            return
        self.emit(ev.TargetState(state="starting" if state == "starting" else "reconnecting",
                                 profile=self.profile.name, kind=self.profile.kind, message=message))

    def _on_reattached(self, ready: dict) -> None:
        if isinstance(ready.get("input"), dict):  # a question asked while the link was down
            self._on_input(dict(ready["input"]))
        self.emit(ev.TargetState(state="ready", profile=self.profile.name, kind=self.profile.kind,
                                 message="reattached to the same kernel: its state is kept; output from the "
                                         "gap is replayed"))
        if self._unsynced:
            changes, self._unsynced = set(self._unsynced), set()
            self._spawn(self.on_changes(changes))

    async def _ensure_kernel(self) -> None:
        """A live kernel; after a death, a fresh one -- and a restarted target if it was lost. A
        session kernel that is still there is attached to again: its state is kept."""
        if self.kernel is not None and self.kernel.alive:
            return
        if self.taken_over.is_set():
            raise TargetError("another devloop front end took this session over",
                              hint=f"`devloop attach -p {self.profile.name}` takes it back")
        was_lost = self.kernel is not None and self.kernel._lost
        old = self.kernel
        self.kernel = None
        if was_lost or (self._target_info is not None and not await self._target_alive()):
            await self._reconnect()
        await self._start_kernel()
        if self.kernel is not None and self.kernel.fresh and any(h is not None for h in self.last_ok):
            why = "the kernel was gone; a fresh one starts"
            if isinstance(old, SessionClient) and old.end_reason in ("died", "no_session", "bye"):
                why = f"the session kernel had ended ({_ended(old.end_info)}); a fresh one starts"
            self._forget_state(why)

    async def _target_alive(self) -> bool:
        try:
            return await self.target.alive()
        except Exception:  # noqa: BLE001 - an error here means "not alive"
            return False

    async def _reconnect(self) -> None:
        """Start the target again after it was lost; resend only what the remote lacks."""
        delay = 0.2
        for attempt in range(1, 6):
            self.emit(ev.TargetState(state="reconnecting", profile=self.profile.name, kind=self.profile.kind,
                                     message=f"the target was lost; reconnecting (try {attempt} of 5)"))
            try:
                self._target_info = await self.target.start()
                break
            except (TargetError, OSError) as exc:
                if attempt == 5:
                    raise
                self._log(f"reconnect failed: {exc}", "warning")
                await asyncio.sleep(delay)
                delay *= 2
        await self.syncer.reset()  # what the target holds is asked again
        await self._initial_sync()
        self.emit(ev.TargetState(state="ready", profile=self.profile.name, kind=self.profile.kind,
                                 message="reconnected: files resynced"))

    async def restart_kernel(self) -> None:
        """A fresh kernel: every cell's state is gone, so every cell is stale."""
        async with self._pass_lock:
            if self.kernel is not None:
                await self.kernel.shutdown()
            self.kernel = None
            self._forget_state("kernel restarted")
            await self._ensure_kernel()

    def _forget_state(self, why: str) -> None:
        self.last_ok = [None] * len(self.cells)
        for cell in self.cells:
            self.emit(ev.CellState(cell=cell.index, state="stale"))
        self._log(f"all cells stale: {why}", "info")

    async def interrupt(self) -> None:
        """KeyboardInterrupt in the running cell (or SIGINT to the running script)."""
        if self.kernel is not None and self._running_cell is not None:
            self._log("interrupting the running cell", "info")
            await self.kernel.notify("interrupt")

    async def _stop_session_on_target(self) -> None:
        """End a session kernel this front end cannot talk to (best effort, bounded)."""
        try:
            channel = await asyncio.wait_for(self.target.spawn(self.target.agent_argv("session-stop")), 15)
            await asyncio.wait_for(channel.wait(), 15)
        except Exception as exc:  # noqa: BLE001 - the target may be gone, which ends it too
            self._log(f"stopping the session on the target: {exc}")

    # ----------------------------------------------------------------- agent callbacks
    def _on_output(self, rid: str | None, stream: str, text: str) -> None:
        kernel = self.kernel if self.kernel is not None else self._joining
        cell = self._rid_cell.get(rid or "")
        if cell is None:  # a request another front end sent: the kernel says which cell it was
            where = kernel.where_of(rid) if kernel is not None else None
            cell = where[1] if where is not None and where[0] == self._rel_or_none() else -1
        replayed = bool(kernel is not None and kernel.replaying)
        if self._launched is not None:  # a script under [run].launcher: tag each line's rank
            from devloop.core.launcher import tag_ranks

            kept = (self._launched[0] if self._launched else "") + text
            self._launched[:] = [kept[-65536:]]  # the tail: where torchrun's failure summary is
            text = tag_ranks(text)
        self.emit(ev.Output(cell=cell, stream=stream, text=text, replayed=replayed))
        if self.metrics.names:
            for name, value in self.metrics.feed(text, stream):
                step = self._metric_steps[name] = self._metric_steps.get(name, 0) + 1
                self.emit(ev.Metric(metric=name, value=value, step=step, cell=cell))

    def _on_display(self, msg: dict) -> None:
        """A figure, image or value the cell showed: images are saved locally first."""
        kernel = self.kernel if self.kernel is not None else self._joining
        rid = msg.get("id")
        cell = self._rid_cell.get(str(rid) if rid is not None else "")
        if cell is None:
            where = kernel.where_of(rid) if kernel is not None else None
            cell = where[1] if where is not None and where[0] == self._rel_or_none() else -1
        try:
            event = self.outputs.event(msg, cell, replayed=bool(kernel is not None and kernel.replaying))
        except Exception as exc:  # noqa: BLE001 - a full disk or a bad message never ends the reader
            self._log(f"saving an image under .devloop/outputs failed: {exc}", "warning")
            return
        self.emit(event)

    def _on_input(self, msg: dict) -> None:
        """A cell waits in input(): a front end that can answer gets an InputRequest; with none
        (`answers_input` False) the cell gets end of input at once, with the reason."""
        try:
            n = int(msg.get("n"))
        except (TypeError, ValueError):
            return
        cell = self._rid_cell.get(str(msg.get("id") or ""))
        if cell is None:
            kernel = self.kernel if self.kernel is not None else self._joining
            where = kernel.where_of(msg.get("id")) if kernel is not None else None
            cell = where[1] if where is not None and where[0] == self._rel_or_none() else -1
        if not self.answers_input:
            self._spawn(self.answer_input(n, None, "no terminal or pipe is attached to this devloop "
                                                   "front end: run it in a terminal, or pipe the input in"))
            return
        self.emit(ev.InputRequest(cell=cell, n=n, prompt=str(msg.get("prompt") or ""),
                                  password=bool(msg.get("password"))))

    async def answer_input(self, n: int, text: str | None, reason: str = "") -> None:
        """Answer question `n` of the kernel: a line, or None for end of input (`reason`: why)."""
        kernel = self.kernel if self.kernel is not None else self._joining
        if kernel is not None:
            await kernel.answer_input(n, text, reason)

    def _on_gpu(self, payload: dict) -> None:
        self.emit(ev.GpuSample(available=bool(payload.get("available")),
                               gpus=tuple(payload.get("gpus") or ()),
                               reason=str(payload.get("reason", "")),
                               source=str(payload.get("source", ""))))

    def _on_agent_log(self, level: str, message: str) -> None:
        self._log(f"agent: {message}", level if level in ("debug", "info", "warning") else "debug")

    # ----------------------------------------------------------------- sync
    def _rules(self) -> Any:
        from devloop.core.sync.manifest import IgnoreRules

        return IgnoreRules.load(self.root, _sync_excluded(self.config))

    async def _initial_sync(self) -> None:
        """The first sync after a (re)connect: the walk overlaps the remote's answer (the Syncer)."""
        await self._sync(None)

    async def _sync(self, paths: Iterable[str] | None) -> Any:
        """Send what changed (`paths`: the watcher's; None: the whole tree), report it, run the
        profile's setup when a dependency file changed; the plan (None when nothing was sent)."""
        result = await self.syncer.sync_now(paths)
        plan = result.plan
        if plan is None:
            return None
        stats = result.stats
        self.emit(ev.SyncDone(files=stats.files, bytes=stats.bytes, deleted=stats.deleted,
                              ms=round(result.ms, 1), dependencies_changed=tuple(plan.dependency_files)))
        if plan.dependency_files and self.profile.setup:
            await self._run_setup(plan.dependency_files)
        return plan

    def _progress_reporter(self) -> Any:
        """SyncProgress events, at most ~5 a second, for a sync long enough to need them."""
        t0 = time.perf_counter()
        last = [0.0]

        def report(files_done: int, files_total: int, bytes_done: int, bytes_total: int) -> None:
            now = time.perf_counter()
            if now - t0 < 0.5 or now - last[0] < 0.2:
                return
            last[0] = now
            rate = bytes_done / (now - t0)
            eta = (bytes_total - bytes_done) / rate if rate > 0 else None
            self.emit(ev.SyncProgress(files_done=files_done, files_total=files_total, bytes_done=bytes_done,
                                      bytes_total=bytes_total, rate_bps=round(rate, 1),
                                      eta_s=round(eta, 1) if eta is not None else None))

        return report

    async def pull(self) -> Any:
        """Bring `[sync] pull` outputs back now (after each pass, and `devloop pull`); a
        failure is a warning, never a failed pass."""
        from devloop.core.units import human_bytes, plural

        try:
            result = await self.puller.pull()
        except (TargetError, ConnectionLost, OSError) as exc:
            self._log(f"pull: {exc}", "warning")
            return None
        if result.deferred:
            self._log(f"pull: {len(result.deferred)} file(s) over the {self.puller.max_bytes >> 20} MB "
                      f"per pass ([sync] pull_max_mb) come with the next pass: "
                      f"{', '.join(result.deferred[:5])}{' ...' if len(result.deferred) > 5 else ''}",
                      "warning")
        if result.skipped:
            self._log(f"pull: not pulled (changed while read, gone, or refused): {', '.join(result.skipped[:5])}",
                      "info")
        # each conflict is told by the front ends from PullDone (it was a warning too: twice)
        if result.files or result.conflicts or result.deferred:
            self.emit(ev.PullDone(files=tuple(result.files), bytes=result.bytes,
                                  conflicts=tuple({"path": k, "remote": r} for k, r in result.conflicts),
                                  deferred=tuple(result.deferred),
                                  ms=round(result.ms, 1)))
        self._log(f"pull: {plural(len(result.files), 'file')}, {human_bytes(result.bytes)} in {result.ms:.0f} ms")
        return result

    async def sync_now(self) -> Any:
        """Sync the whole tree now (the `sync` key, `devloop sync` handed over); the plan or None."""
        async with self._changes_lock:
            return await self._sync(None)

    async def _run_setup(self, files: Iterable[str]) -> None:
        """The profile's `setup` command, run when a dependency file changed, before the rerun."""
        assert self._target_info is not None
        setup = self.profile.setup
        self.emit(ev.TargetState(state="setup", profile=self.profile.name, kind=self.profile.kind,
                                 message=f"{', '.join(files)} changed: running setup: {setup}"))
        channel = await self.target.spawn(["sh", "-c", f"{setup} 2>&1"], cwd=self._target_info.workdir)
        await channel.close_stdin()
        while True:
            line = await channel.readline()
            if not line:
                break
            self.emit(ev.Output(cell=-1, stream="stdout", text=line.decode("utf-8", "replace")))
        code = await channel.wait()
        if code != 0:
            self.emit(ev.TargetState(state="setup_failed", profile=self.profile.name, kind=self.profile.kind,
                                     message=f"setup exited with code {code}; the previous environment is kept"))
        else:
            self._log("setup done; restart the kernel (k) to load upgraded packages", "info")

    # ----------------------------------------------------------------- parsing and planning
    def _reparse(self) -> ParsedFile:
        assert self.file is not None
        source = read_source(self.file)
        parsed = parse_cells(source)
        old = self.parsed
        self.parsed = parsed
        if old is None or [(c.title, c.marker_line) for c in old.cells] != [(c.title, c.marker_line) for c in parsed.cells] \
                or old.is_script != parsed.is_script:
            self.emit(ev.FileParsed(file=self.relpath, is_script=parsed.is_script, cells=tuple(
                {"cell": c.index, "title": c.title, "line": c.marker_line} for c in parsed.cells)))
            for message in pass_prep.skipped_messages(parsed):
                self._log(message, "warning")
        return parsed

    def _invalidate_importers(self, changed: Iterable[str]) -> set[int]:
        """A changed helper module makes the cells that import it stale (they rerun); their indices."""
        modules = {m for m in (_module_name(p) for p in changed) if m}
        stale: set[int] = set()
        if not modules:
            return stale
        for cell in self.cells:
            if _imported_modules(cell.code) & modules:
                stale.add(cell.index)
                if cell.index < len(self.last_ok):
                    self.last_ok[cell.index] = None
        return stale

    def _written_by_the_run(self, paths: set[str]) -> bool:
        """True when every changed path is a non-code file that appeared while a pass ran (or
        just after it ended): the run's own outputs. Synced, but rerunning on them would loop a
        cell or script that writes into the project forever."""
        if not paths or any(p.endswith(".py") for p in paths):
            return False
        return self.busy or time.monotonic() - self._pass_ended_at < OUTPUT_GRACE_S

    def plan(self, force: Iterable[int] = ()) -> list[int]:
        """The cells the next pass runs, by the rerun policy."""
        last_ok = list(self.last_ok)
        for i in force:
            if i < len(last_ok):
                last_ok[i] = None
        return plan_reruns(self.cells, last_ok, self.config.run.rerun,
                           removed=self.defined_names.stale(self.cells))

    # ----------------------------------------------------------------- running
    async def run_all(self) -> ev.RunDone | None:
        """Every code cell from the top (or the script): what `devloop run` does."""
        return await self._exclusive_pass(lambda: list(range(len(self.cells))), "run all")

    async def first_pass(self) -> ev.RunDone | None:
        """The first pass of a front end: every cell -- or, attached to a session that already
        ran them, only the cells that changed or are not ok yet (a cell still running from the
        previous front end is waited for, not rerun)."""
        if self.watch_ready is not None:  # a save from now on must reach the watcher, not be lost
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.watch_ready.wait(), 6.0)
        if not self.attached_existing:
            return await self.run_all()
        return await self.run_outdated()

    async def run_outdated(self) -> ev.RunDone:
        """The cells that changed or are not ok yet (what `devloop run` handed to a live session
        does); a RunDone even when nothing had to run."""
        done = await self.run_changed()
        if done is None:
            self._log("every cell is up to date in the session: nothing reruns", "info")
            return self._run_done(True, 0, 0, 0.0)
        return done

    async def rerun_cell(self, index: int) -> ev.RunDone | None:
        return await self._exclusive_pass(lambda: self.plan(force=[index]), f"rerun cell {index}")

    async def run_changed(self) -> ev.RunDone | None:
        return await self._exclusive_pass(self.plan, "changed")

    async def _exclusive_pass(self, indices: Any, reason: str) -> ev.RunDone | None:
        """One pass at a time: reparse, plan with `indices()`, run; remember when it ended."""
        async with self._pass_lock:
            try:
                await self._await_inherited()
                self._reparse()
                self._pass_hashes = [c.hash for c in self.cells]
                self.outputs.next_run()  # this pass's images: a folder of their own
                try:
                    done = await self._pass(indices(), reason=reason)
                except (SourceError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001 - a devloop bug: said, never a silent hang
                    done = self._internal_error(exc)
                if done is not None and self.puller.enabled:
                    await self.pull()  # [sync] pull: the outputs the pass wrote come back
                return done
            finally:
                self._running_cell = None
                self._pass_ended_at = time.monotonic()

    def _internal_error(self, exc: BaseException) -> ev.RunDone:
        """A pass broke inside devloop: the front end says so and the pass ends failed (a watch
        goes on with the next save) instead of waiting forever for a pass that is gone."""
        self._log("".join(traceback.format_exception(exc)).rstrip())  # for `-v`: where it broke
        self.emit(ev.TargetState(state="error", profile=self.profile.name, kind=self.profile.kind,
                                 message=f"the pass stopped on a devloop error ({type(exc).__name__}: {exc}); "
                                         "the next save runs again -- run with -v for where it broke"))
        return self._run_done(False, 1, 0, 0.0)

    async def on_changes(self, paths: Iterable[str]) -> ev.RunDone | None:
        """What a save does: sync, reparse, interrupt a stale pass, run the planned cells."""
        paths = set(paths)
        async with self._changes_lock:
            outputs = self._written_by_the_run(paths)
            try:
                plan = await self._sync(paths)
            except ConnectionLost:
                plan = None
                if isinstance(self.kernel, SessionClient) and self.kernel.alive:
                    # the kernel goes on; these saves are synced (and run) once it is reattached
                    self._unsynced |= paths
                    self._log("the link to the target is down: the save is synced after reattaching", "info")
                    return None
                if self.kernel is not None:
                    await self.kernel.shutdown()
            changed = set(plan.copies) if plan is not None else paths
            if outputs:
                self._log(f"{len(paths)} changed file(s) written during the run: synced, no rerun")
                return None
            py_changed = sorted(p for p in changed if p.endswith(".py") and p != self._rel_or_none())
            import_stale: set[int] = set()
            if py_changed:
                import_stale = self._invalidate_importers(py_changed)
                if self.kernel is not None:
                    await self.kernel.notify("purge", paths=py_changed)
            try:
                self._reparse()
            except SourceError as exc:
                self._log(str(exc), "warning")
                return None
            if self.busy and self._should_interrupt(import_stale):
                await self.interrupt()
        return await self.run_changed()

    def _rel_or_none(self) -> str | None:
        try:
            return self.relpath if self.file is not None else None
        except SourceError:
            return None

    def _should_interrupt(self, import_stale: set[int] = frozenset()) -> bool:
        """Stop the running cell only when its code, an earlier cell's code or a module they
        import changed since the pass started (not because some cell is merely not ok yet)."""
        running = self._running_cell
        if running is None:
            return False
        if self.parsed is not None and self.parsed.is_script:
            return True
        if any(i <= running for i in import_stale):
            return True
        before, now = self._pass_hashes, self.cells
        if len(now) <= running:
            return True
        return any(i >= len(before) or now[i].hash != before[i] for i in range(running + 1))

    async def _pass(self, indices: list[int], reason: str) -> ev.RunDone | None:
        assert self.parsed is not None
        if self.config.run.launcher and not self.parsed.is_script:
            return self._refuse_launcher()
        if self.parsed.is_script:
            return await self._run_script()
        if not indices:
            return None
        kernel_before = self.kernel
        await self._ensure_kernel_or_report()
        if self.kernel is None:
            return self._run_done(False, 1, 0, 0.0)
        if self.kernel is not kernel_before:
            indices = sorted(set(indices) | set(self.plan()))  # the fresh kernel lacks earlier cells
        self.emit(ev.CellsPlanned(cells=tuple(indices), reason=reason))
        for i in indices:
            self.emit(ev.CellState(cell=i, state="pending"))
        t0 = time.perf_counter()
        ok, ran = True, 0
        rel = self.relpath
        if len(self.last_ok) < len(self.cells):
            self.last_ok.extend([None] * (len(self.cells) - len(self.last_ok)))
        del self.last_ok[len(self.cells):]
        planned = [self.cells[i] for i in indices]
        stale = self.defined_names.stale(self.cells, self.kernel)
        # the pass's check (pass_prep.py) rides on its first exec: one round trip less per save
        precheck = {"cells": pass_prep.check_payload(planned, rel), "forget": list(stale)}
        for pos, i in enumerate(indices):
            cell = self.cells[i]
            self._running_cell = i
            rid = self.kernel.next_id()
            self._rid_cell[rid] = i
            started = self._cell_starts(cell, stale if pos == 0 else None)
            if pos:
                started()
            try:
                result = await self.kernel.exec(cell.code, rel, cell.code_line, rid=rid,
                                                tag={"file": rel, "cell": i, "hash": cell.hash},
                                                argv=[rel, *self.script_args],
                                                precheck=precheck if pos == 0 else None,
                                                on_checked=started if pos == 0 else None)
            finally:
                self._running_cell = None
            if not result.checked:  # a planned cell does not compile: nothing ran, state kept
                self._rid_cell.pop(rid, None)
                self._refuse_pass(indices, pass_prep.failing_cell(planned, result.error or {}, rel),
                                  result.error or {})
                return self._run_done(False, 1, 0, 0.0)
            ran += 1
            if result.error:
                self._emit_error(i, result.error)
            if result.died:
                await self._report_death(i, result)
                ok = False
                self._rid_cell.pop(rid, None)
                break
            exited = result.exit_code  # sys.exit(code) in the cell: the pass ends, as `python` would
            self.emit(ev.CellDone(cell=i, ok=result.ok, ms=round(result.ms, 1), exit_code=exited))
            self.emit(ev.CellState(cell=i, state="ok" if result.ok else "failed"))
            self._rid_cell.pop(rid, None)
            if exited is not None:
                self.last_ok[i] = cell.hash if result.ok else None
                for j in indices[pos + 1:]:
                    self.last_ok[j] = None
                    self.emit(ev.CellState(cell=j, state="stale"))
                self._log(f"cell {i} called sys.exit({exited}): the pass ends there; the kernel keeps its state",
                          "info")
                return self._run_done(exited == 0, exited, ran, (time.perf_counter() - t0) * 1000)
            if result.ok:
                self.last_ok[i] = cell.hash
            else:
                self.last_ok[i] = None
                ok = False
                for j in indices[pos + 1:]:
                    self.last_ok[j] = None
                    self.emit(ev.CellState(cell=j, state="stale"))
                break
        return self._run_done(ok, 0 if ok else 1, ran, (time.perf_counter() - t0) * 1000)

    def _cell_starts(self, cell: Any, stale: dict[str, int] | None) -> Callable[[], None]:
        """What a cell's start emits, once (for a pass's first cell: when its precheck passed,
        which removed the stale names no cell defines any more, as `python file.py` would)."""
        done: list[bool] = []

        def started() -> None:
            if done:
                return
            done.append(True)
            if stale:
                self.defined_names.removed(list(stale))
                for message in pass_prep.removal_messages(stale, self.cells):
                    self._log(message, "warning")
            self.emit(ev.CellState(cell=cell.index, state="running"))
            self.emit(ev.CellStart(cell=cell.index, line=cell.marker_line, title=cell.title))
            self.defined_names.ran(cell, self.kernel)
        return started

    def _refuse_pass(self, indices: list[int], cell: int, error: dict) -> None:
        """A planned cell does not compile on the target: the pass fails at its file:line and
        nothing runs (the kernel's state is kept)."""
        self._emit_error(cell, error)
        self.emit(ev.CellDone(cell=cell, ok=False, ms=0.0))
        self.emit(ev.CellState(cell=cell, state="failed"))
        if cell < len(self.last_ok):
            self.last_ok[cell] = None
        for j in indices:
            if j != cell:
                self.emit(ev.CellState(cell=j, state="stale"))

    @property
    def script_args(self) -> list[str]:
        """sys.argv[1:] of the file: `-- ARGS` on the command line, else [run].args (a `devloop
        run` handed over with other ones is refused)."""
        return [str(a) for a in (getattr(self.config.run, "args", ()) or ())]

    async def _ensure_kernel_or_report(self) -> None:
        try:
            await self._ensure_kernel()
        except (TargetError, ConnectionLost) as exc:
            self.kernel = None
            self.emit(ev.TargetState(state="error", profile=self.profile.name, kind=self.profile.kind,
                                     message=str(exc)))

    def _run_done(self, ok: bool, code: int, ran: int, ms: float) -> ev.RunDone:
        done = ev.RunDone(ok=ok, exit_code=code, cells_run=ran, ms=round(ms, 1))
        self.emit(done)
        return done

    def _emit_error(self, cell: int, err: dict[str, Any]) -> None:
        frames = err.get("frames") or []
        rel = self.relpath
        mine = [f for f in frames if f.get("file") == rel]
        where = (mine or frames or [{}])[-1]
        line = where.get("line") or (self.cells[cell].code_line if 0 <= cell < len(self.cells) else 1)
        self.emit(ev.CellError(cell=cell, type=str(err.get("etype", "Error")), message=str(err.get("message", "")),
                               file=str(where.get("file") or rel), line=int(line),
                               traceback=str(err.get("traceback", ""))))

    async def _explain_exit(self, code: int | None) -> str | None:
        """The target's reason for an exit code (an OOM kill names the memory limit), if it has one."""
        try:
            return await self.target.explain_exit(code)
        except Exception as exc:  # noqa: BLE001 - the exit is reported either way
            self._log(f"could not ask the target why the process ended: {exc}")
            return None

    async def _report_death(self, cell: int, result: ExecResult) -> None:
        code = result.exit_code
        explained = None if result.lost else await self._explain_exit(code)
        if explained:
            why = f"the kernel was {explained}" if explained.startswith("killed") else explained
        elif result.lost:
            why = "the connection to the target was lost"
        elif code is not None and code < 0:
            why = f"the kernel was killed by signal {-code}"
        elif code is not None and code > 128 and code - 128 in (9, 11, 6):
            why = f"the kernel was killed by signal {code - 128}" + (
                " (out of memory?)" if code == 137 else "")
        else:
            why = f"the kernel exited with code {code}"
        message = f"{why}; its state is lost and the next run starts a fresh kernel"
        c = self.cells[cell] if 0 <= cell < len(self.cells) else None
        self.emit(ev.CellError(cell=cell, type="KernelDied", message=message, file=self.relpath,
                               line=c.marker_line if c else 1))
        self.emit(ev.CellDone(cell=cell, ok=False, ms=0.0))
        self.emit(ev.CellState(cell=cell, state="failed"))
        self.emit(ev.TargetState(state="kernel_died", profile=self.profile.name, kind=self.profile.kind,
                                 message=message))
        self._forget_state(why)

    async def _run_script(self) -> ev.RunDone:
        """A file with no cell markers: a fresh process per run, its exit code mirrored."""
        await self._ensure_kernel_or_report()
        if self.kernel is None:
            return self._run_done(False, 1, 0, 0.0)
        assert self._target_info is not None
        self.emit(ev.CellState(cell=0, state="running"))
        self.emit(ev.CellStart(cell=0, line=1, title=self.relpath))
        rid = self.kernel.next_id()
        self._rid_cell[rid] = 0
        self._running_cell = 0
        t0 = time.perf_counter()
        argv = [self._target_info.python, "-u", self.relpath, *self.script_args]
        env = dict(self.config.run.env or {})
        launcher = self.config.run.launcher
        if launcher:  # core/launcher.py: N processes, their lines tagged with the rank
            from devloop.core import launcher as launch

            nproc = launch.resolve_nproc(self.config.run.nproc_per_node,
                                         self._target_info.gpus_requested)
            argv = launch.launch_argv(launcher, nproc, self.relpath, self.script_args)
            env.setdefault("PYTHONUNBUFFERED", "1")
            self._launched = []
        try:
            result = await self.kernel.run(argv, env=env, rid=rid)
        finally:
            self._running_cell = None
            self._rid_cell.pop(rid, None)
            launched, self._launched = self._launched, None
        if result.died:
            await self._report_death(0, result)
            return self._run_done(False, 1, 1, (time.perf_counter() - t0) * 1000)
        code = result.exit_code if result.exit_code is not None else (0 if result.ok else 1)
        if code < 0:
            code = 128 - code
        ok = code == 0
        failed = launch.failed_rank("".join(launched)) if launcher and launched and not ok else None
        if failed is not None:
            rank, rc = failed
            self.emit(ev.CellError(cell=0, type="RankFailed", message=(
                f"rank {rank} failed" + (f" with exit code {rc}" if rc is not None else "")
                + f" ({launcher}: its lines are tagged [r{rank}])"), file=self.relpath, line=1))
        elif result.error:
            self._emit_error(0, result.error)
        elif code == 137:  # an OOM kill names the limit
            explained = await self._explain_exit(code)
            if explained:
                self.emit(ev.CellError(cell=0, type="Killed", message=f"the script was {explained}"
                                       if explained.startswith("killed") else explained,
                                       file=self.relpath, line=1))
        self.emit(ev.CellDone(cell=0, ok=ok, ms=round(result.ms, 1)))
        self.emit(ev.CellState(cell=0, state="ok" if ok else "failed"))
        return self._run_done(ok, code, 1, (time.perf_counter() - t0) * 1000)

    def _refuse_launcher(self) -> ev.RunDone:
        """A percent file under [run].launcher: cells share one kernel process, DDP needs one
        process per GPU, so there is nothing right to run."""
        self.emit(ev.CellError(
            cell=0, type="LauncherError", file=self.relpath, line=1, message=(
                f"[run] launcher = {self.config.run.launcher!r} runs a script as several "
                f"processes, and {self.relpath} has '# %%' cells, which run in one kernel "
                f"(DDP needs processes, not a kernel) -- fix: run a script without cell "
                f"markers, or remove launcher from [run] in devloop.toml")))
        self.emit(ev.CellState(cell=0, state="failed"))
        return self._run_done(False, 2, 0, 0.0)

    # ----------------------------------------------------------------- watching
    def set_watching(self, on: bool) -> None:
        """Watch on/off: while off, saves are remembered and handled when it is turned on."""
        self.watching = on
        if on and self._pending_changes:
            changes, self._pending_changes = set(self._pending_changes), set()
            self._spawn(self.on_changes(changes))

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._log("".join(traceback.format_exception(exc)).rstrip())  # for `-v`: where it broke
            self.emit(ev.TargetState(state="error", profile=self.profile.name, kind=self.profile.kind,
                                     message=f"{type(exc).__name__}: {exc}"))

    async def watch(self, stop: asyncio.Event) -> None:
        """Rerun on every save until `stop` is set."""
        from devloop.core.watch import watch_changes

        self.watch_ready = asyncio.Event()  # before any await: a first pass started beside us waits
        rules = self._rules()
        debounce = int(getattr(self.config.sync, "debounce_ms", 50) or 50)
        self._log(f"watching {self.root} (debounce {debounce} ms)", "info")
        ended = asyncio.Event()  # `stop`, or another front end took the session over

        async def either() -> None:
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.taken_over.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                ended.set()
            finally:
                for w in waits:
                    w.cancel()

        relay = asyncio.ensure_future(either())
        try:
            async for changes in watch_changes(self.root, rules, debounce, ended, self.watch_ready):
                if ended.is_set():
                    break
                if not self.watching:
                    self._pending_changes |= set(changes)
                    continue
                self._spawn(self.on_changes(changes))
        finally:
            relay.cancel()
        for task in list(self._tasks):
            if not task.done():
                task.cancel()


def _sync_excluded(config: Any) -> tuple[str, ...]:
    """`[sync] exclude` plus the pulled outputs: they never sync back nor start a rerun."""
    sync = config.sync
    return tuple(getattr(sync, "exclude", ()) or ()) + tuple(getattr(sync, "pull", ()) or ())


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _ended(info: dict) -> str:
    """How a session kernel ended, in words: its supervisor's record."""
    info = info or {}
    reason, code = info.get("reason"), info.get("exit_code")
    if reason == "idle":
        return "stopped after being idle"
    if isinstance(code, int) and code < 0:
        return f"killed by signal {-code}"
    if isinstance(code, int):
        return f"exit code {code}"
    return "it is no longer running"
