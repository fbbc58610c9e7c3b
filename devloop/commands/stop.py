"""`devloop stop`: end a session -- its kernel, what it started, its container or pod."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from devloop.commands._common import fail, run_async

NAME = "stop"
ORDER = 27
HELP = "end a session left running on a target: kernel, its processes, its container or pod"
DESCRIPTION = (
    "End the session of a profile (the kernel that outlives `devloop watch --detach`, a killed "
    "front end or `d` in the app): its variables are lost, every process it started is ended and "
    "its container or pod is removed (unless the profile says keep). Nothing is left on the target."
)


def register(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-p", "--profile", metavar="P",
                       help="the profile whose session to end (default: [project].profile, else 'local')")
    group.add_argument("--all", action="store_true", help="end every session this project has running")
    parser.add_argument("--force", action="store_true",
                        help="reach the profile's target even when this project has no record of a session "
                             "there (the record was deleted), end any session kernel in its workdir and clean "
                             "the target up")


def run(args: argparse.Namespace) -> int:
    from devloop.core import session_ops, session_record
    from devloop.core.config import ConfigError, load_config

    try:
        config = load_config(Path.cwd())
        if args.all:
            names = [r.profile for r in session_record.all_records(Path(config.root))]
            if not names:
                print("no sessions to stop")
                return 0
        else:
            names = [config.profile(args.profile).name]
            if not args.force and session_record.load(Path(config.root), names[0]) is None:
                print(f"{names[0]}: no session recorded in this project (`devloop sessions` lists them; "
                      "--force reaches the target anyway)")
                return 0
    except ConfigError as exc:
        return fail(str(exc))

    async def main(stop: asyncio.Event) -> int:
        results = await asyncio.gather(*(session_ops.stop(config, n) for n in names))
        code = 0
        for ok, text in results:
            print(text)
            code = code or (0 if ok else 1)
        return code

    return run_async(main)
