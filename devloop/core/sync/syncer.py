"""One owner for a project's sync into one target: the watch loop and `devloop sync` both use it.

A `Syncer` holds what a sync needs between runs: the scanner (and its stat cache), what the
target holds (`remote`, asked once per connection), the kept receiver (in `sync.transport`,
closed by `close()`), and the local record of what was synced (`.devloop/manifests/PROFILE.json`,
what `devloop sync --dry-run` compares with). The session drives it per save, the `sync`
command once; a control socket can hand it work with `sync_now(paths)`.

The speed tricks live here, in one place:
- the first walk leaves new files unhashed and overlaps the remote's answer (`connect`);
  only files the remote may hold already (same path and size) are hashed before planning
  (`hash_needed`), the rest as they are sent (the transport's hashes trailer), and
  `adopt_hashes` puts those into the stat cache afterwards: a first sync reads the tree once;
- with a persisted stat cache, a few changed files (`EAGER_HASH_FILES` / `_BYTES`) are hashed
  during the walk and the cache is written while the target is still answering;
- `connect(keep=True)`: one kept receiver answers the manifest, then takes the sync;
- the record and the stat cache are written on threads after a send: the rerun does not wait.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from devloop.core.sync.manifest import IgnoreRules, Manifest, Scanner, load_local_manifest, save_local_manifest
from devloop.core.sync.plan import SyncPlan, plan_sync
from devloop.core.sync.transport import ProgressFn, close_receiver, fetch_remote_manifest, sync_via_agent
from devloop.core.targets.base import SyncStats

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.targets.base import Target

STAT_CACHE = ".devloop/statcache.json"
EAGER_HASH_FILES = 256  # up to this many changed files (and bytes) are hashed during the walk
EAGER_HASH_BYTES = 16 << 20


@dataclass(frozen=True)
class SyncResult:
    """What one `sync_now` did. `plan` is None when nothing was sent (up to date, or a target
    that runs in place); `ms` counts the scan, the plan and the send."""

    plan: SyncPlan | None
    stats: SyncStats | None
    ms: float

    @property
    def sent(self) -> bool:
        return self.plan is not None


class Syncer:
    """Syncs `root` into `target`. `profile`: the name the local record is kept under (None:
    keep none). `stat_cache`: keep the scanner's stat cache in `.devloop/statcache.json` (a
    fresh process, `devloop sync`, then hashes only what changed). `log(text, level)`: diagnostics
    ("debug"; "warning" for a record that could not be written).
    `progress()`: makes the `on_progress(files_done, files_total, bytes_done, bytes_total)`
    callback for one send of `sync_now` (its clock starts as the send does)."""

    def __init__(self, target: "Target", root: Path | str, exclude: Sequence[str] = (), *,
                 profile: str | None = None, stat_cache: bool = False,
                 log: Callable[[str, str], None] | None = None,
                 progress: Callable[[], ProgressFn | None] | None = None) -> None:
        self.target = target
        self.root = Path(root)
        self.exclude = tuple(exclude or ())
        self.profile = profile
        self.stat_cache = stat_cache
        self._log = log or (lambda _text, _level: None)
        self._progress = progress
        self.remote: Manifest | None = None  # what the target holds (as devloop synced it)
        self._warned: set[str] = set()  # receiver warnings already told
        self.connected = False  # `remote` was asked since the last (re)connect
        self._scanner: Scanner | None = None
        self._scanning: asyncio.Future | None = None  # a walk begun before connect()
        self._record_write: asyncio.Future | None = None  # the last record write (on a thread)
        self._cache_write: asyncio.Future | None = None  # the last stat cache write (on a thread)

    @property
    def scanner(self) -> Scanner | None:
        return self._scanner

    # ----------------------------------------------------------------- scanning
    def _new_scanner(self) -> Scanner:
        cache = self.root / STAT_CACHE if self.stat_cache else None
        return Scanner(self.root, IgnoreRules.load(self.root, self.exclude), cache_file=cache)

    def _walk(self) -> Manifest:
        """The full walk for a sync (on a thread: the stat cache, ~1 MB of JSON for 10,000
        files, loads there too). New files stay unhashed, except a few changed ones when the
        stat cache is kept: hashed now, so the cache is complete and written at once."""
        if self._scanner is None:
            self._scanner = self._new_scanner()
        scanner = self._scanner
        manifest = scanner.scan(False)
        if (scanner.cache_file is not None and scanner.unhashed <= EAGER_HASH_FILES
                and scanner.unhashed_bytes <= EAGER_HASH_BYTES):
            scanner.hash_unhashed()
            scanner.save_cache()
        return manifest

    def begin_scan(self) -> asyncio.Future:
        """Start the full walk on a thread now, e.g. while the target starts; `connect` uses it."""
        if self._scanning is None:
            self._scanning = asyncio.ensure_future(self._after_cache_write(self._walk))
        return self._scanning

    async def _after_cache_write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn` on a thread, once a stat cache write in flight is done (it reads what fn changes)."""
        if self._cache_write is not None:
            await asyncio.gather(self._cache_write, return_exceptions=True)
        return await asyncio.to_thread(fn, *args)

    # ----------------------------------------------------------------- the remote
    async def connect(self, *, keep: bool = False) -> Manifest:
        """Ask the target what it holds while the tree is walked (both sides stat every file:
        they overlap instead of adding up); the walked manifest. `keep`: the kept receiver
        answers, and then takes the next `send(..., keep=True)` (one process start for both)."""
        walking = self.begin_scan()
        try:
            remote = await fetch_remote_manifest(self.target, keep_open=keep)
        except BaseException:
            self._scanning = None
            await asyncio.gather(walking, return_exceptions=True)
            raise
        self._scanning = None
        manifest = await walking
        self.remote = remote
        self.connected = True
        self._log(f"remote has {len(remote) if remote else 0} synced files", "debug")
        return manifest

    async def reset(self) -> None:
        """After a reconnect: what the target holds is asked again; the old receiver went
        with the old connection (closing it may fail: ignored)."""
        self.remote = None
        self.connected = False
        try:
            await close_receiver(self.target)
        except Exception:  # noqa: BLE001 - the old receiver went with the old connection
            pass

    # ----------------------------------------------------------------- planning and sending
    async def plan(self, paths: Iterable[str] | None = None, scanned: Manifest | None = None) -> SyncPlan:
        """What to send: `scanned` (a manifest `connect` just walked), else a rescan of `paths`
        (the watcher's), else of the whole tree; against what the target holds."""
        if self._scanner is None:
            self._scanner = await self._after_cache_write(self._new_scanner)
        scanner = self._scanner
        if scanned is not None:
            manifest = scanned
        elif paths is None or self.remote is None:
            manifest = await self._after_cache_write(scanner.scan, False)
        else:
            manifest = await self._after_cache_write(scanner.update, list(paths))
        if scanner.unhashed:
            await asyncio.to_thread(scanner.hash_needed, self.remote)
        return plan_sync(self.remote, manifest)

    async def send(self, plan: SyncPlan, on_progress: ProgressFn | None = None, *,
                   keep: bool = False) -> SyncStats:
        """Send `plan` (an empty one sends nothing); then the target holds `plan.new_manifest`,
        the stat cache takes the hashes computed on the way, and the record and the stat cache
        are written on threads (`flush()` waits for them). `keep`: through the kept receiver
        (started if needed; the watch loop's ~4 ms per one-file sync)."""
        if plan.empty or not self.target.needs_sync:  # in place: the files are there already
            stats = SyncStats(files=0, bytes=0, deleted=0, ms=0.0)
        else:
            stats = await sync_via_agent(self.target, plan, str(self.root), on_progress, keep_open=keep)
            if self._scanner is not None:
                self._scanner.adopt_hashes(plan.new_manifest)
            for warning in stats.warnings:  # each said once per Syncer, not at every save
                if warning not in self._warned:
                    self._warned.add(warning)
                    self._log(warning, "warning")
        self.remote = plan.new_manifest
        await self._write_back(plan.new_manifest)
        return stats

    async def sync_now(self, paths: Iterable[str] | None = None) -> SyncResult:
        """Send what changed: among `paths` (the watcher's, through the kept receiver), or in
        the whole tree (None). The first call asks the target what it holds first."""
        if not self.target.needs_sync:
            return SyncResult(None, None, 0.0)
        scanned = None
        if not self.connected:
            scanned = await self.connect()
            paths = None
        t0 = time.perf_counter()
        plan = await self.plan(paths, scanned)
        if plan.empty:
            return SyncResult(None, None, (time.perf_counter() - t0) * 1000)
        self._log(f"sync plan: {len(plan.copies)} to copy ({plan.bytes_total} bytes), "
                  f"{len(plan.deletes)} to delete, {len(plan.mode_changes)} mode changes", "debug")
        progress = self._progress() if self._progress is not None else None
        stats = await self.send(plan, progress, keep=paths is not None)
        return SyncResult(plan, stats, (time.perf_counter() - t0) * 1000)

    async def dry_run(self) -> SyncPlan:
        """What a sync would do, compared with the local record (no target asked)."""
        if self._scanner is None:
            self._scanner = await asyncio.to_thread(self._new_scanner)
        manifest = await asyncio.to_thread(self._scanner.scan)
        plan = plan_sync(load_local_manifest(self.root, self.profile) if self.profile else None, manifest)
        await asyncio.to_thread(self._scanner.save_cache)
        return plan

    # ----------------------------------------------------------------- writing back
    async def _write_back(self, manifest: Manifest) -> None:
        """The record (for `devloop sync --dry-run`) and the stat cache, written on threads: for
        a big tree a write takes tens of ms the rerun should not wait for. One write of each
        at a time, in order (the previous one is awaited first)."""
        await self.flush()
        if self.profile is not None:
            self._record_write = asyncio.ensure_future(self._write(
                save_local_manifest, self.root, self.profile, manifest, what="the sync manifest"))
        if self._scanner is not None and self._scanner.cache_file is not None:
            self._cache_write = asyncio.ensure_future(self._write(self._scanner.save_cache, what="the stat cache"))

    async def _write(self, fn: Callable[..., None], *args: Any, what: str) -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except OSError as exc:
            self._log(f"could not keep {what}: {exc}", "warning")

    async def flush(self) -> None:
        """Wait for the writes in flight."""
        for write in (self._record_write, self._cache_write):
            if write is not None:
                await asyncio.gather(write, return_exceptions=True)

    async def close(self) -> None:
        """Finish the walk and the writes in flight, stop the kept receiver. Idempotent."""
        if self._scanning is not None:
            await asyncio.gather(self._scanning, return_exceptions=True)
            self._scanning = None
        await self.flush()
        await close_receiver(self.target)
