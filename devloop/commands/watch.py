"""`devloop watch`: the loop headless -- a first pass, then a rerun on every save."""

from __future__ import annotations

import argparse
import asyncio

from devloop.commands._common import UsageError, add_json_arg, add_target_args, fail, resolve, run_async

NAME = "watch"
ORDER = 20
HELP = "run FILE, then rerun the changed cells on every save (headless); Ctrl-C to stop"
DESCRIPTION = (
    "Sync the project and run FILE once, then watch the project: on every save the changes are "
    "synced and the changed cells rerun by the [run].rerun policy (linear: the first changed cell "
    "and all after it; reactive: changed cells and the cells that use what they define). Earlier "
    "cells keep their state. A file without '# %%' markers reruns as a fresh process. "
    "Ctrl-C or SIGTERM stops it and cleans up the target."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser)
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    from devloop.core.session import Session, SourceError
    from devloop.core.targets.base import TargetError
    from devloop.headless import Reporter

    try:
        config, profile, file = resolve(args)
    except UsageError as exc:
        return fail(str(exc))
    verbose = getattr(args, "verbose", 0) or 0
    reporter = Reporter(json_lines=args.json, verbose=verbose)

    async def main(stop: asyncio.Event) -> int:
        session = Session(config, profile, file, reporter, verbose=verbose)
        try:
            await session.start()
            first = asyncio.create_task(session.run_all())
            watcher = asyncio.create_task(session.watch(stop))
            await stop.wait()
            for task in (first, watcher):
                task.cancel()
            await asyncio.gather(first, watcher, return_exceptions=True)
            return 0
        except SourceError as exc:
            return fail(str(exc))
        except TargetError as exc:
            return fail(str(exc))
        finally:
            await session.close()

    return run_async(main)
