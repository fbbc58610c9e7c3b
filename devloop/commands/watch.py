"""`devloop watch`: the loop headless -- a first pass, then a rerun on every save."""

from __future__ import annotations

import argparse
import asyncio

from devloop.commands._common import (add_forward_arg, add_json_arg, add_script_args, add_target_args,
                                      run_headless_session)

NAME = "watch"
ORDER = 20
HELP = "run FILE, then rerun the changed cells on every save (headless); Ctrl-C to stop"
DESCRIPTION = (
    "Sync the project and run FILE once, then watch the project: on every save the changes are "
    "synced and the changed cells rerun by the [run].rerun policy (linear: the first changed cell "
    "and all after it; reactive: changed cells and the cells that use what they define). Earlier "
    "cells keep their state. A file without '# %%' markers reruns as a fresh process. "
    "The kernel lives on the target as a session: a dropped connection reattaches to it with its "
    "state kept, and a watch that is killed leaves it running for the next `watch`, `up`, `run` or "
    "`attach`, which picks it up and reruns only what changed. Ctrl-C or SIGTERM stops the session "
    "and cleans up the target (with --detach: leaves it running)."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser)
    add_script_args(parser)
    add_json_arg(parser)
    add_forward_arg(parser)
    parser.add_argument("--detach", action="store_true",
                        help="on Ctrl-C or SIGTERM leave the session (kernel, variables, container or "
                             "pod) running on the target; `devloop attach`, `watch` or `up` picks it up "
                             "and `devloop stop` ends it")


def run(args: argparse.Namespace) -> int:
    async def body(session, stop: asyncio.Event, emit) -> int:  # noqa: ANN001 - Session, Emit
        watcher = asyncio.create_task(session.watch(stop))  # first: the first pass waits until it sees saves
        first = asyncio.create_task(session.first_pass())
        try:  # until Ctrl-C / SIGTERM, or another front end took the session over
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(session.taken_over.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        finally:  # also when cancelled (a second Ctrl-C, the reader left): nothing runs on
            for task in (first, watcher):
                task.cancel()
        await asyncio.gather(first, watcher, return_exceptions=True)
        return 0

    return run_headless_session(args, body, mode="session", leave_running=lambda session: bool(args.detach))
