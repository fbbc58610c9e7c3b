"""`devloop sync`: send the project to the profile's workdir once (only what differs) and exit."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from devloop.commands._common import UsageError, add_json_arg, add_target_args, fail, resolve, run_async

NAME = "sync"
ORDER = 30
HELP = "send the project to the profile's workdir (only what changed) and exit"
DESCRIPTION = (
    "Scan the project (honouring .gitignore, .devloopignore and [sync].exclude), ask the target "
    "what it already holds, and send only the difference: changed and new files, deletions of "
    "files devloop itself synced earlier. Files a run wrote on the target are never deleted. "
    "When `devloop up` or `watch` runs for the profile, the sync is handed to it (its scanner and "
    "receiver are warm)."
)
LISTED = 20  # paths listed by name without -v
PROGRESS_EVERY_S = 0.25
PROGRESS_AFTER_S = 0.5


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be sent and deleted, compared with what devloop last "
                             "synced to this profile; change nothing and start no target")
    add_json_arg(parser)


def _size(n: float) -> str:
    from devloop.core.units import human_bytes  # the units the app and `run` print

    return human_bytes(n)


def _files(n: int) -> str:
    from devloop.core.units import plural

    return plural(n, "file")


class _Progress:
    """Progress for long syncs: a redrawn line on a terminal, `sync_progress` events with --json."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def __call__(self, files_done: int, files_total: int, bytes_done: int, bytes_total: int) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if elapsed < PROGRESS_AFTER_S or now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        rate = bytes_done / elapsed if elapsed > 0 else 0.0
        eta = (bytes_total - bytes_done) / rate if rate > 0 else None
        if self.as_json:
            from devloop.core.events import SyncProgress

            print(json.dumps(SyncProgress(files_done, files_total, bytes_done, bytes_total,
                                          round(rate, 1), None if eta is None else round(eta, 2)).to_json()),
                  flush=True)
        elif self.tty:
            left = f", {eta:.0f} s left" if eta is not None else ""
            sys.stderr.write(f"\r  {files_done}/{files_total} files, {_size(bytes_done)}/{_size(bytes_total)}"
                             f", {_size(rate)}/s{left}\x1b[K")
            sys.stderr.flush()
            self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _print_plan(plan, verbose: int, dry: bool) -> None:
    verb = "would send" if dry else "sending"
    print(f"{verb} {_files(len(plan.copies))} ({_size(plan.bytes_total)}), "
          f"{'would delete' if dry else 'deleting'} {len(plan.deletes)}"
          + (f", {len(plan.mode_changes)} mode changes" if plan.mode_changes else ""))
    for mark, paths in (("+", plan.copies), ("-", plan.deletes), ("m", plan.mode_changes)):
        shown = paths if verbose or len(paths) <= LISTED else paths[:LISTED]
        for p in shown:
            print(f"  {mark} {p}")
        if len(shown) < len(paths):
            print(f"  {mark} ... and {len(paths) - len(shown)} more (-v lists them all)")
    if plan.dependency_files:
        print(f"dependency files changed: {', '.join(plan.dependency_files)}")


def run(args: argparse.Namespace) -> int:
    from devloop.core.events import SyncDone
    from devloop.core.sync.syncer import Syncer
    from devloop.core.targets import create_target
    from devloop.core.targets.base import TargetError

    try:
        config, profile, _ = resolve(args, need_file=False)
    except UsageError as exc:
        return fail(str(exc))
    verbose = getattr(args, "verbose", 0) or 0
    root = Path(config.root).resolve()

    def log(text: str, level: str) -> None:
        if verbose or level == "warning":
            print(f"devloop sync: {text}", file=sys.stderr)

    async def handed_over(started: float) -> int | None:
        """A live `devloop up` / `watch` of this profile syncs with its warm scanner and kept
        receiver (see core/control.py); None when there is none."""
        from devloop.core import control

        if args.dry_run or not control.is_live(root, profile.name):
            return None
        async for answer in control.request(root, profile.name, {"op": "sync"}, timeout=3600):
            if not answer.get("ok"):
                log(f"the live session could not sync ({answer.get('error')}); syncing directly", "warning")
                return None
            ms = (time.perf_counter() - started) * 1000
            done = SyncDone(int(answer["files"]), int(answer["bytes"]), int(answer["deleted"]), round(ms, 1))
            if args.json:
                print(json.dumps(done.to_json()))
            elif answer["files"] or answer["deleted"]:
                print(f"synced {_files(done.files)} ({_size(done.bytes)}), deleted {done.deleted} in {ms:.0f} ms "
                      f"(by the running session)")
            else:
                print(f"{profile.name}: up to date (checked by the running session)")
            return 0
        return None

    async def main(stop: asyncio.Event) -> int:
        started = time.perf_counter()
        code = await handed_over(started)
        if code is not None:
            return code
        target = create_target(profile, config)
        if not target.needs_sync:
            if not args.json:
                print(f"profile {profile.name!r} runs in place: nothing to sync")
            else:
                print(json.dumps(SyncDone(0, 0, 0, 0.0).to_json()))
            return 0
        # a fresh process: the stat cache on disk spares hashing what did not change
        syncer = Syncer(target, root, config.sync.excluded, profile=profile.name,
                        stat_cache=True, log=log)
        if args.dry_run:
            plan = await syncer.dry_run()
            if args.json:
                print(json.dumps({"event": "sync_plan", "dry_run": True, "copies": list(plan.copies),
                                  "deletes": list(plan.deletes), "mode_changes": list(plan.mode_changes),
                                  "bytes": plan.bytes_total, "dependencies_changed": list(plan.dependency_files)}))
            else:
                _print_plan(plan, verbose, dry=True)
            return 0
        # the local walk runs on a thread while the target starts and answers what it holds:
        # both sides stat the whole tree, so they overlap instead of adding up
        syncer.begin_scan()
        try:
            await target.start()
            manifest = await syncer.connect(keep=True)  # one receiver answers, then takes the sync
            plan = await syncer.plan(scanned=manifest)
            if not args.json:
                if plan.empty:
                    print(f"{profile.name}: up to date ({_files(len(manifest))})")
                else:
                    _print_plan(plan, verbose, dry=False)
            progress = _Progress(args.json)
            try:
                stats = await syncer.send(plan, None if plan.empty else progress, keep=True)
            finally:
                progress.clear()
            await syncer.flush()  # the record even when nothing was sent
            ms = (time.perf_counter() - started) * 1000
            done = SyncDone(stats.files, stats.bytes, stats.deleted, round(ms, 1), tuple(plan.dependency_files))
            if args.json:
                print(json.dumps(done.to_json()))
            elif not plan.empty:
                print(f"synced {_files(stats.files)} ({_size(stats.bytes)}), deleted {stats.deleted} in {ms:.0f} ms")
            return 0
        except TargetError as exc:
            return fail(str(exc))
        finally:
            await syncer.close()
            await target.stop()

    return run_async(main)
