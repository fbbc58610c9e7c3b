"""`devloop pull`: bring the `[sync] pull` outputs back from the profile's workdir once."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devloop.commands._common import UsageError, add_json_arg, add_target_args, fail, resolve, run_async

NAME = "pull"
ORDER = 31
HELP = "bring the [sync] pull outputs (results/, figures/*.png ...) back from the target"
DESCRIPTION = (
    "Fetch the files under the [sync] pull rules (gitignore syntax) that are new or changed on "
    "the target since the last pull, into the project. A local file changed since the last pull "
    "is kept and the target's copy is written beside it as NAME.remote.EXT. At most "
    "[sync] pull_max_mb per call; the rest comes with the next. `run`, `watch` and `up` do the "
    "same after every pass, except that they leave a pulled file you deleted deleted (until it "
    "changes on the target); `devloop pull` brings it back. A live session's container / pod is "
    "left running."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    parser.add_argument("--max-mb", type=int, metavar="MB",
                        help="bring at most this many MB in this call (default: [sync] pull_max_mb, 100)")
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    from devloop.core import session_record
    from devloop.core.events import PullDone
    from devloop.core.sync.pull import Puller
    from devloop.core.targets import create_target
    from devloop.core.targets.base import TargetError
    from devloop.core.units import human_bytes, plural

    try:
        config, profile, _ = resolve(args, need_file=False)
    except UsageError as exc:
        return fail(str(exc))
    patterns = tuple(getattr(config.sync, "pull", ()) or ())
    if not patterns:
        return fail('no [sync] pull rules in devloop.toml -- fix: add e.g. pull = ["results/", "figures/*.png"] '
                    "under [sync]")
    verbose = getattr(args, "verbose", 0) or 0
    root = Path(config.root).resolve()
    max_mb = args.max_mb if args.max_mb else int(getattr(config.sync, "pull_max_mb", 100) or 100)
    if max_mb <= 0:
        return fail(f"--max-mb must be a positive number of MB, not {max_mb}")

    def log(text: str, level: str = "debug") -> None:
        if verbose or level in ("warning", "info"):
            print(f"devloop pull: {text}", file=sys.stderr)

    async def main(stop) -> int:  # noqa: ANN001 - asyncio.Event
        target = create_target(profile, config)
        if not target.needs_sync:
            print(f"profile {profile.name!r} runs in place: its outputs are in the project already"
                  if not args.json else json.dumps(PullDone().to_json()))
            return 0
        live = session_record.load(root, profile.name) is not None
        if live:
            target.adopt_existing = True
        try:
            await target.start()
            result = await Puller.for_config(target, config, profile.name, log=log, max_bytes=max_mb << 20,
                                             restore_deleted=True,  # asked for: a deleted pulled file returns
                                             ).pull()
        except TargetError as exc:
            return fail(str(exc))
        finally:
            if live:
                await target.detach()  # the session's container / pod stays
            else:
                await target.stop()
        done = PullDone(files=tuple(result.files), bytes=result.bytes,
                        conflicts=tuple({"path": k, "remote": r} for k, r in result.conflicts),
                        deferred=tuple(result.deferred), ms=round(result.ms, 1))
        if args.json:
            print(json.dumps(done.to_json()))
            return 0
        print(f"pulled {plural(len(result.files), 'file')}, {human_bytes(result.bytes)} in {result.ms:.0f} ms")
        for rel in result.files if verbose else ():
            print(f"  {rel}")
        for kept, remote in result.conflicts:
            print(f"conflict: {kept} changed here since the last pull: kept; the target's copy is {remote}")
        if result.deferred:
            print(f"{plural(len(result.deferred), 'file')} over {max_mb} MB left for the next pull: "
                  f"{', '.join(result.deferred[:5])}{' ...' if len(result.deferred) > 5 else ''}")
        return 0

    return run_async(main)
