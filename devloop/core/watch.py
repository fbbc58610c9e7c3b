"""Changes in the project tree, as batches of relpaths: the watch loop's trigger.

watchfiles (inotify/FSEvents) with a filter built from the sync ignore rules, so ignored paths
(a run writing 1,000 checkpoints, editor swap files) never wake the loop. Changes are grouped
until `debounce_ms` pass without a new one, so an editor's save dance (write a temp file, rename
it over the original, delete the `~` backup, vim's `4913` probe) gives one batch; paths that
appeared and vanished inside one batch (the temp file) are dropped from it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator

import watchfiles

from devloop.core.sync.ignore import IgnoreRules

MAX_BATCH_MS = 1000  # a stream of changes still yields at least this often


class _Filter:
    """watchfiles filter: absolute path -> keep? (not ignored, inside root)."""

    def __init__(self, root: str, rules: IgnoreRules) -> None:
        self.root = root
        self.prefix = root.rstrip(os.sep) + os.sep
        self.rules = rules

    def relpath(self, path: str) -> str | None:
        if not path.startswith(self.prefix):
            return None
        rel = path[len(self.prefix):]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
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


async def watch_changes(root: Path | str, rules: IgnoreRules, debounce_ms: int = 50,
                        stop_event: asyncio.Event | None = None) -> AsyncIterator[set[str]]:
    """Yield sets of changed posix relpaths under `root` until `stop_event` is set."""
    root_s = str(Path(root).resolve())
    flt = _Filter(root_s, rules)
    # watchfiles closes a batch once a whole `step` passed with no new change, checking every
    # `step`: a save is seen after step..2*step. Half the debounce keeps the quiet period the
    # user asked for on average while a single save reaches the rerun in ~debounce_ms.
    step = max(5, int(debounce_ms) // 2)
    async for changes in watchfiles.awatch(
        root_s, watch_filter=flt, step=step, debounce=max(MAX_BATCH_MS, step),
        stop_event=stop_event, recursive=True,
    ):
        batch = _net_changes(changes, flt)
        if any(IgnoreRules.is_ignore_file(p) for p in batch):
            rules.reload()
        if batch:
            yield batch
