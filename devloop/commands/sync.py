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
    "files devloop itself synced earlier. Files a run wrote on the target are never deleted."
)
LISTED = 20  # paths listed by name without -v
PROGRESS_EVERY_S = 0.25
PROGRESS_AFTER_S = 0.5
EAGER_HASH_FILES = 256  # up to this many changed files (and bytes) are hashed during the scan
EAGER_HASH_BYTES = 16 << 20


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be sent and deleted, compared with what devloop last "
                             "synced to this profile; change nothing and start no target")
    add_json_arg(parser)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


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
    print(f"{verb} {len(plan.copies)} files ({_size(plan.bytes_total)}), "
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


def _uses_agent_receiver(target) -> bool:
    """Targets whose sync is the tar stream into the agent: those get a progress callback."""
    from devloop.core.targets.base import Target

    return type(target).sync is Target.sync or type(target).__name__ == "LocalTarget"


def run(args: argparse.Namespace) -> int:
    from devloop.core.events import SyncDone
    from devloop.core.sync.manifest import IgnoreRules, Scanner, load_local_manifest, save_local_manifest
    from devloop.core.sync.plan import plan_sync
    from devloop.core.sync.transport import close_receiver, fetch_remote_manifest, sync_via_agent
    from devloop.core.targets import create_target
    from devloop.core.targets.base import TargetError

    try:
        config, profile, _ = resolve(args, need_file=False)
    except UsageError as exc:
        return fail(str(exc))
    verbose = getattr(args, "verbose", 0) or 0
    root = Path(config.root).resolve()
    exclude = tuple(config.sync.exclude or ())

    def scan(hash_new: bool = True):
        # the stat cache (~1 MB of JSON for 10,000 files) loads on the worker thread too
        scanner = Scanner(root, IgnoreRules.load(root, exclude), cache_file=root / ".devloop" / "statcache.json")
        return scanner, scanner.scan(hash_new)

    def scan_and_keep():
        """The scan for a sync: a few changed files are hashed at once and the stat cache is
        written while the target is still answering; a big first sync leaves new files to be
        hashed as they are sent."""
        scanner, manifest = scan(False)
        if scanner.unhashed <= EAGER_HASH_FILES and scanner.unhashed_bytes <= EAGER_HASH_BYTES:
            scanner.hash_unhashed()
            scanner.save_cache()
        return scanner, manifest

    async def main(stop: asyncio.Event) -> int:
        started = time.perf_counter()
        target = create_target(profile, config)
        if not getattr(target, "needs_sync", True):
            if not args.json:
                print(f"profile {profile.name!r} runs in place: nothing to sync")
            else:
                print(json.dumps(SyncDone(0, 0, 0, 0.0).to_json()))
            return 0
        if args.dry_run:
            scanner, manifest = await asyncio.to_thread(scan)
            plan = plan_sync(load_local_manifest(root, profile.name), manifest)
            if args.json:
                print(json.dumps({"event": "sync_plan", "dry_run": True, "copies": list(plan.copies),
                                  "deletes": list(plan.deletes), "mode_changes": list(plan.mode_changes),
                                  "bytes": plan.bytes_total, "dependencies_changed": list(plan.dependency_files)}))
            else:
                _print_plan(plan, verbose, dry=True)
            await asyncio.to_thread(scanner.save_cache)
            return 0
        # the local scan runs on a thread while the target starts and answers what it holds:
        # both sides stat the whole tree, so they overlap instead of adding up (see
        # scan_and_keep for which new files are hashed then, which on the way out)
        scanning = asyncio.ensure_future(asyncio.to_thread(scan_and_keep))
        kept = _uses_agent_receiver(target)
        saving = None
        try:
            await target.start()
            if kept:  # one receiver process answers the manifest, then takes the sync
                remote = await fetch_remote_manifest(target, keep_open=True)
            else:
                remote = await target.remote_manifest()
            scanner, manifest = await scanning
            if scanner.unhashed:
                await asyncio.to_thread(scanner.hash_needed, remote)
            plan = plan_sync(remote, manifest)
            if not args.json:
                if plan.empty:
                    print(f"{profile.name}: up to date ({len(manifest)} files)")
                else:
                    _print_plan(plan, verbose, dry=False)
            deleted = files = nbytes = 0
            if not plan.empty:
                progress = _Progress(args.json)
                try:
                    if kept:
                        stats = await sync_via_agent(target, plan, str(root), progress, keep_open=True)
                    else:
                        stats = await target.sync(plan, str(root))
                finally:
                    progress.clear()
                files, nbytes, deleted = stats.files, stats.bytes, stats.deleted
                scanner.adopt_hashes(plan.new_manifest)
            # (a no-op unless hashes arrived with the sync or the scan changed it)
            saving = asyncio.ensure_future(asyncio.to_thread(scanner.save_cache))
            save_local_manifest(root, profile.name, plan.new_manifest)
            await saving
            ms = (time.perf_counter() - started) * 1000
            done = SyncDone(files, nbytes, deleted, round(ms, 1), tuple(plan.dependency_files))
            if args.json:
                print(json.dumps(done.to_json()))
            elif not plan.empty:
                print(f"synced {files} files ({_size(nbytes)}), deleted {deleted} in {ms:.0f} ms")
            return 0
        except TargetError as exc:
            return fail(str(exc))
        finally:
            for task in (scanning, saving):
                if task is not None and not task.done():
                    try:
                        await task
                    except Exception:  # noqa: BLE001 - the error that ended the sync is reported
                        pass
            if kept:
                await close_receiver(target)
            await target.stop()

    return run_async(main)
