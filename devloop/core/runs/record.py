"""The run recorder: listens to a session's events and writes one record per pass.

Every pass -- `devloop run`, each rerun of `watch` / `up` -- gets a run id (uuid4) and one line
in `.devloop/runs.jsonl` (core/runs/store.py). The recorder is an ordinary event listener the
SessionHost subscribes, so no front end has to remember to record: what ran is known from the
events (cells planned, started, done, errors, GPU samples, syncs); what it ran *on* (cell code
hashes, target, image, session id) from the Session; the code's git commit and dirty-diff hash
from promote's provenance code, computed on a thread when the pass starts (the code that ran
is the code at its start). Writing happens on a thread too; `drain()` waits for it, and a
`RunRecorded` event then carries the record to the front ends (JUnit, CI step summary).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as _dt
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from devloop import __version__
from devloop.core import events as ev
from devloop.core.gpu import GpuStats
from devloop.core.runs.store import GREEN_STATES, is_green  # noqa: F401 - re-exported

TRACEBACK_KEEP = 8_000  # characters of a traceback kept in the record (its end: the raise)
MESSAGE_KEEP = 2_000


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_git_work_tree(root: Path) -> bool:
    """Is there a `.git` at `root` or above (or GIT_DIR set)? Checked with a few stats, so a
    project outside git costs no git process per pass."""
    if os.environ.get("GIT_DIR"):
        return True
    folder = Path(root).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return True
    return False


def git_provenance(root: Path, config: Any = None) -> dict[str, Any]:
    """{commit, dirty, diff_sha256} as promote computes them ("" / False outside git), leaving
    out the pipeline files promote writes for `config`. Runs on the recorder's thread: nothing
    of promote is imported outside git, nor on the event loop (a heavy import there delays
    the watcher's start after a first pass)."""
    if not in_git_work_tree(root):
        return {"commit": "", "dirty": False, "diff_sha256": ""}
    from devloop.core.promote.model import PromoteError
    from devloop.core.promote.provenance import git_state

    ignore = promote_outputs(config) if config is not None else ()
    try:
        state = git_state(root, ignore=ignore)
    except (PromoteError, OSError):
        return {"commit": "", "dirty": False, "diff_sha256": ""}
    return {"commit": state.commit, "dirty": bool(state.dirty_files), "diff_sha256": state.diff_sha256}


def promote_outputs(config: Any) -> tuple[Path, ...]:
    """The pipeline files `devloop promote` writes by default: left out of the dirty diff, as
    promote leaves them out, so a run and a later promote hash the same diff."""
    try:
        from devloop.core.promote.service import output_path, pipeline_name

        name = pipeline_name(config, None)
        return tuple(output_path(config, t, name, None) for t in (config.promote.targets or ("argo",)))
    except Exception:  # noqa: BLE001 - a config without [promote]: nothing to leave out
        return ()


@dataclass
class _Pass:
    run_id: str
    start: str
    t0: float
    git: Any  # a Future of git_provenance(), or its dict
    reason: str = ""
    file: str = ""
    script: bool = False
    cells: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    gpu: GpuStats = field(default_factory=GpuStats)
    sync: dict[str, Any] = field(default_factory=dict)
    session_id: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None  # a cell's sys.exit


class RunRecorder:
    """A listener (`recorder(event)`) that turns each pass into a run record.

    `bind(session, publish)` gives it the Session (for hashes, target, session id; a callable
    returning it) and where to announce the written record. Nothing here raises into the event
    loop: a record that cannot be written is a warning, the run goes on."""

    def __init__(self, config: Any, profile: Any, file: Path | None, *, mode: str = "plain",
                 write: Callable[[Path, dict], Path] | None = None) -> None:
        self.root = Path(config.root)
        self.config = config
        self.profile = profile
        self.file = file
        self.mode = mode
        self._write = write
        self._session: Callable[[], Any] = lambda: None
        self._publish: Callable[[ev.Event], None] = lambda event: None
        self._pass: _Pass | None = None
        self._sync: dict[str, Any] = {}
        self._tasks: set[asyncio.Future] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.records: list[dict[str, Any]] = []  # what this recorder wrote, oldest first

    def bind(self, session: Callable[[], Any], publish: Callable[[ev.Event], None]) -> None:
        self._session = session
        self._publish = publish

    # ----------------------------------------------------------------- events
    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.SyncDone):
            s = self._sync
            s["syncs"] = s.get("syncs", 0) + 1
            for key in ("files", "bytes", "deleted"):
                s[key] = s.get(key, 0) + int(getattr(event, key) or 0)
            s["ms"] = round(s.get("ms", 0.0) + float(event.ms or 0.0), 1)
        elif isinstance(event, ev.CellsPlanned):
            p = self._pass or self._open(event.reason)
            for i in event.cells:
                if i in p.cells:
                    p.cells[i]["state"] = "pending"
        elif isinstance(event, ev.CellStart):
            p = self._pass or self._open("script" if event.cell == 0 and self._is_script() else "")
            cell = p.cells.setdefault(event.cell, {"index": event.cell, "title": event.title,
                                                   "line": event.line, "hash": "", "ms": 0.0})
            cell["state"] = "running"
        elif isinstance(event, ev.CellDone) and self._pass is not None:
            cell = self._pass.cells.get(event.cell)
            if cell is not None:
                cell["state"] = "ok" if event.ok else "failed"
                cell["ms"] = round(float(event.ms or 0.0), 1)
            code = getattr(event, "exit_code", None)
            if code is not None:
                self._pass.exit_code = int(code)
        elif isinstance(event, ev.CellError) and self._pass is not None:
            self._pass.errors.append({
                "cell": event.cell, "type": event.type, "message": event.message[:MESSAGE_KEEP],
                "file": event.file, "line": event.line,
                "traceback": event.traceback[-TRACEBACK_KEEP:] if event.traceback else "",
            })
        elif isinstance(event, ev.CellState) and self._pass is not None:
            cell = self._pass.cells.get(event.cell)
            if cell is not None and event.state == "stale" and cell.get("state") == "pending":
                cell["state"] = "skipped"  # planned, not run: an earlier cell failed
        elif isinstance(event, ev.GpuSample) and self._pass is not None:
            self._pass.gpu.add(event)
        elif isinstance(event, ev.RunDone):
            p = self._pass or self._open("")
            self._finish(p, ok=event.ok, exit_code=event.exit_code, ms=event.ms)

    def _is_script(self) -> bool:
        parsed = getattr(self._session(), "parsed", None)
        return bool(getattr(parsed, "is_script", False))

    # ----------------------------------------------------------------- a pass
    def _open(self, reason: str) -> _Pass:
        p = _Pass(run_id=str(uuid.uuid4()), start=utc_now(), t0=time.perf_counter(),
                  git=self._start_git(), reason=reason)
        session = self._session()
        parsed = getattr(session, "parsed", None)
        p.script = bool(getattr(parsed, "is_script", False))
        rel = ""
        if session is not None and getattr(session, "file", None) is not None:
            try:
                rel = session.relpath
            except Exception:  # noqa: BLE001 - a file outside the project: its path as given
                rel = str(session.file)
        elif self.file is not None:
            rel = str(self.file)
        p.file = rel
        last_ok = list(getattr(session, "last_ok", None) or ())
        for cell in getattr(parsed, "cells", ()) or ():
            kept = cell.index < len(last_ok) and last_ok[cell.index] == cell.hash
            p.cells[cell.index] = {"index": cell.index, "title": cell.title or (rel if p.script else ""),
                                   "line": cell.marker_line, "hash": cell.hash,
                                   "state": "unchanged" if kept else "not_run", "ms": 0.0}
        record = getattr(session, "record", None)
        p.session_id = str(getattr(record, "session", "") or "")
        info = getattr(session, "info", None)
        kind = getattr(info, "kind", "") or getattr(self.profile, "kind", "")
        details = getattr(info, "details", None) or {}
        host = (getattr(self.profile, "host", None) or details.get("node") or details.get("host")
                or (socket.gethostname() if kind == "local" else ""))
        p.target = {"kind": kind, "host": str(host or ""), "id": str(getattr(info, "id", "") or "")}
        p.image = {"ref": str(getattr(info, "image", "") or getattr(self.profile, "image", "") or ""),
                   "digest": str(getattr(info, "image_digest", "") or "")}
        p.sync, self._sync = self._sync, {}
        self._pass = p
        return p

    def _start_git(self) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop (a test driving it by hand)
            return git_provenance(self.root, self.config)
        if self._pool is None:  # one worker: the git read and the write of a pass stay in order
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="devloop-runs")
        return self._pool.submit(git_provenance, self.root, self.config)

    def _finish(self, p: _Pass, *, ok: bool, exit_code: int, ms: float | None = None,
                running: str = "interrupted") -> None:
        self._pass = None
        cells = []
        for index in sorted(p.cells):
            cell = dict(p.cells[index])
            if cell.get("state") == "pending":
                cell["state"] = "skipped"
            elif cell.get("state") == "running":
                cell["state"] = running
            cells.append(cell)
        gpus = [{k: g.get(k) for k in ("index", "name", "uuid", "samples", "mem_peak", "mem_total",
                                       "util_mean", "util_peak")} for g in p.gpu.summary()]
        record: dict[str, Any] = {
            "run_id": p.run_id, "session_id": p.session_id, "mode": self.mode,
            "start": p.start, "end": utc_now(),
            "ms": round(ms if ms is not None else (time.perf_counter() - p.t0) * 1000, 1),
            "profile": getattr(self.profile, "name", ""), "target": p.target, "image": p.image,
            "git": {}, "devloop_version": __version__, "file": p.file, "script": p.script,
            "reason": p.reason, "ok": bool(ok), "exit_code": int(exit_code),
            "cells": cells, "errors": p.errors,
            "gpu": gpus, "gpu_note": "" if gpus else (p.gpu.unavailable_reason or "no samples"),
            "sync": p.sync or {"syncs": 0, "files": 0, "bytes": 0, "deleted": 0, "ms": 0.0},
        }
        if p.exit_code is not None:
            record["sys_exit"] = p.exit_code
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_now(record, p.git)
            return
        task = loop.create_task(self._write_later(record, p.git))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_later(self, record: dict[str, Any], git: Any) -> None:
        try:
            record["git"] = await asyncio.wrap_future(git) if isinstance(git, concurrent.futures.Future) else git
        except Exception:  # noqa: BLE001 - git failing never loses the record
            record["git"] = {"commit": "", "dirty": False, "diff_sha256": ""}
        loop = asyncio.get_running_loop()
        try:
            path = await loop.run_in_executor(self._pool, self._append, record)
        except Exception as exc:  # noqa: BLE001 - disk full, read-only project: say it, go on
            self._announce(record, "", exc)
            return
        self._announce(record, str(path))

    def _write_now(self, record: dict[str, Any], git: Any) -> None:
        record["git"] = git.result() if isinstance(git, concurrent.futures.Future) else git
        try:
            path = self._append(record)
        except Exception as exc:  # noqa: BLE001
            self._announce(record, "", exc)
            return
        self._announce(record, str(path))

    def _append(self, record: dict[str, Any]) -> Path:
        if self._write is not None:
            return self._write(self.root, record)
        from devloop.core.runs.store import append

        return append(self.root, record)

    def _announce(self, record: dict[str, Any], path: str, exc: BaseException | None = None) -> None:
        self.records.append(record)
        if exc is not None:
            from devloop.core.runs.store import runs_path

            self._publish(ev.Diagnostic(level="warning", message=(
                f"{runs_path(self.root)}: the run record of {record['run_id']} was not written: "
                f"{type(exc).__name__}: {exc} -- fix: make .devloop/ writable (disk full?)")))
        self._publish(ev.RunRecorded(run_id=record["run_id"], record=record, path=path))

    async def flush(self) -> None:
        """Wait until the records of the passes ended so far are written and announced."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    async def drain(self, running: str = "interrupted") -> None:
        """Record a pass still open (the front end is going: its running cell is `running` --
        "interrupted", or "detached" when it goes on in a session -- exit 130) and wait until
        every record is written and announced."""
        if self._pass is not None:
            self._finish(self._pass, ok=False, exit_code=130, running=running)
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=False)
