"""Changes in the project tree, as batches of relpaths: the watch loop's trigger.

watchfiles (inotify/FSEvents) with a filter built from the sync ignore rules, so ignored paths
(a run writing 1,000 checkpoints, editor swap files) never wake the loop. Changes are grouped
until `debounce_ms` pass without a new one, so an editor's save dance (write a temp file, rename
it over the original, delete the `~` backup, vim's `4913` probe) gives one batch; paths that
appeared and vanished inside one batch (the temp file) are dropped from it.

A batch is yielded only once its files have settled: same size, mtime and inode across a quiet
period as long as the debounce. An editor that rewrites a file in place in several writes (or
a slow disk, or a 2 s copy) would otherwise start a pass on a half-written file; what changes
while we wait joins the batch instead of starting a second pass right behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import AsyncIterator

import watchfiles

from devloop.core.sync.ignore import IgnoreRules

MAX_BATCH_MS = 1000  # watchfiles hands over a stream of changes at least this often
SETTLE_MAX_MS = 10_000  # a file still changing after this long is taken as it is (a log a run
#                         keeps appending to inside the project must not hold the loop forever)
READY_WAIT_S = 5.0  # at most this long for the watcher to prove it sees changes
BIG_BATCH = 256  # a batch this large is stat()ed in a thread (a `git checkout` of 2,000 files)


class _Filter:
    """watchfiles filter: absolute path -> keep? (not ignored, inside root)."""

    def __init__(self, root: str, rules: IgnoreRules, canary: str = "",
                 on_canary: "asyncio.Event | None" = None) -> None:
        self.root = root
        self.prefix = root.rstrip(os.sep) + os.sep
        self.rules = rules
        self.canary, self.on_canary = canary, on_canary

    def relpath(self, path: str) -> str | None:
        if not path.startswith(self.prefix):
            return None
        rel = path[len(self.prefix):]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        if self.canary and path == self.canary:  # the watcher is live: it saw our own write
            if self.on_canary is not None:
                self.on_canary.set()
            return False
        rel = self.relpath(path)
        if not rel:
            return False
        is_dir = change != watchfiles.Change.deleted and os.path.isdir(path)
        return not self.rules.matches(rel, is_dir)


def _net_changes(changes: set[tuple[watchfiles.Change, str]], flt: _Filter) -> set[str]:
    """Relpaths that changed, minus those that were created and are gone again."""
    added: set[str] = set()
    out: set[str] = set()
    for change, path in changes:
        rel = flt.relpath(path)
        if not rel:
            continue
        out.add(rel)
        if change == watchfiles.Change.added:
            added.add(rel)
    root = flt.root
    return {rel for rel in out if rel not in added or os.path.lexists(os.path.join(root, rel))}


def _snapshot(root: str, batch: set[str]) -> dict[str, tuple[int, int, int] | None]:
    """What a settled file keeps between two looks: size, mtime, inode (None: gone)."""
    out: dict[str, tuple[int, int, int] | None] = {}
    for rel in batch:
        try:
            st = os.lstat(os.path.join(root, rel))
        except OSError:
            out[rel] = None
        else:
            out[rel] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


async def _look(root: str, batch: set[str]) -> dict[str, tuple[int, int, int] | None]:
    if len(batch) > BIG_BATCH:
        return await asyncio.to_thread(_snapshot, root, batch)
    return _snapshot(root, batch)


async def _quiet(stop_event: asyncio.Event | None, seconds: float) -> bool:
    """Sleep `seconds`; False when `stop_event` was set meanwhile (a SIGTERM is not held up)."""
    if stop_event is None:
        await asyncio.sleep(seconds)
        return True
    try:
        await asyncio.wait_for(stop_event.wait(), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def _prove_live(canary: str, ready: asyncio.Event, step_s: float) -> None:
    """Write `canary` until the watcher reports it (or READY_WAIT_S passed), then remove it.
    inotify watches are set up on a thread inside watchfiles with no signal of their own: a
    save made before then would be lost, so a front end's first pass waits for `ready`."""
    deadline = time.monotonic() + READY_WAIT_S
    try:
        os.makedirs(os.path.dirname(canary), exist_ok=True)
        while not ready.is_set() and time.monotonic() < deadline:
            fd = os.open(canary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.write(fd, b"devloop watch canary\n")
            os.close(fd)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ready.wait(), step_s)
    except OSError:  # a read-only project: nothing to prove it with
        pass
    finally:
        ready.set()
        with contextlib.suppress(OSError):
            os.unlink(canary)


async def watch_changes(root: Path | str, rules: IgnoreRules, debounce_ms: int = 50,
                        stop_event: asyncio.Event | None = None,
                        ready: asyncio.Event | None = None) -> AsyncIterator[set[str]]:
    """Yield sets of changed posix relpaths under `root` until `stop_event` is set; each set
    once its files stopped changing. `ready` is set once the watcher provably sees changes."""
    root_s = str(Path(root).resolve())
    canary = os.path.join(root_s, ".devloop", f"watch-ready.{os.getpid()}.{secrets.token_hex(4)}") if ready else ""
    flt = _Filter(root_s, rules, canary, ready)
    # watchfiles closes a batch once a whole `step` passed with no new change, checking every
    # `step`: a save is seen after step..2*step, and settles one `step` later. Half the debounce
    # keeps the quiet period the user asked for (a batch comes after >= 2 quiet steps) while a
    # single save reaches the rerun in debounce_ms..1.5 * debounce_ms.
    step = max(5, int(debounce_ms) // 2)
    queue: asyncio.Queue[set[str] | BaseException | None] = asyncio.Queue()

    async def pump() -> None:
        """watchfiles -> queue, also while a batch is settling, so its later changes join it."""
        try:
            async for changes in watchfiles.awatch(
                root_s, watch_filter=flt, step=step, debounce=max(MAX_BATCH_MS, step),
                stop_event=stop_event, recursive=True,
            ):
                queue.put_nowait(_net_changes(changes, flt))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            queue.put_nowait(exc)
            return
        queue.put_nowait(None)

    def take(batch: set[str], item: set[str] | BaseException | None) -> bool:
        """Merge a queue item into `batch`; False at the end of the stream."""
        if isinstance(item, BaseException):
            raise item
        if item is None:
            return False
        batch |= item
        return True

    pumping = asyncio.create_task(pump())
    proving = asyncio.create_task(_prove_live(canary, ready, max(0.05, step / 1000))) if ready else None
    try:
        running = True
        while running:
            batch: set[str] = set()
            running = take(batch, await queue.get())
            # settle: watchfiles saw `step` ms without an event; the files must also look the
            # same after another `step` (a writer that paused between two writes changes them)
            deadline = time.monotonic() + SETTLE_MAX_MS / 1000
            seen = await _look(root_s, batch)
            while running and batch and time.monotonic() < deadline:
                if not await _quiet(stop_event, step / 1000):
                    return
                while not queue.empty():
                    running = take(batch, queue.get_nowait()) and running
                now = await _look(root_s, batch)
                if now == seen:
                    break
                seen = now
            if any(IgnoreRules.is_ignore_file(p) for p in batch):
                rules.reload()
            if batch:
                yield batch
    finally:
        if proving is not None:
            proving.cancel()
            with contextlib.suppress(BaseException):
                await proving
        pumping.cancel()
        try:
            await pumping
        except BaseException:  # noqa: BLE001 - cancelled, or its error was raised above
            pass
