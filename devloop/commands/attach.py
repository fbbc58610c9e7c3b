"""`devloop attach`: the full-screen app on a session that is already running."""

from __future__ import annotations

import argparse
from pathlib import Path

from devloop.commands._common import add_forward_arg, add_target_args, fail

NAME = "attach"
ORDER = 6
HELP = "open the full-screen app on a running session (its variables and cell states kept)"
DESCRIPTION = (
    "Attach the app to the session a profile has running (left by `devloop watch --detach`, `d` in "
    "the app, or a front end that died): nothing reruns that is still up to date, output that "
    "arrived while nobody was attached is shown once, and a cell still running goes on. In the app, "
    "d detaches again and q ends the session."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    add_forward_arg(parser)


def run(args: argparse.Namespace) -> int:
    from devloop.commands import up
    from devloop.core import session_record
    from devloop.core.config import ConfigError, load_config

    try:
        config = load_config(Path.cwd())
        profile = config.profile(args.profile)
    except ConfigError as exc:
        return fail(str(exc))
    record = session_record.load(Path(config.root), profile.name)
    if record is None:
        return fail(f"no session is running for profile {profile.name!r} in this project -- fix: "
                    "`devloop up` or `devloop watch` starts one (`devloop sessions` lists them)")
    args.file = record.file or None
    return up.run(args)
