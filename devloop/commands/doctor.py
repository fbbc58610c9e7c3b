"""`devloop doctor`: can devloop use the target, and does its environment match this machine's?"""

from __future__ import annotations

import argparse
import asyncio
import json

from devloop.commands._common import add_json_arg, add_target_args, resolve, run_async

NAME = "doctor"
HELP = "check a profile's target and compare its Python and packages with this machine's"
DESCRIPTION = (
    "Start the profile's target, run the devloop agent there, and report: the target checks "
    "(engine reachable, image present, python found, GPUs seen), the local and remote Python "
    "versions, and for each dependency the project declares (requirements*.txt, pyproject.toml) "
    "its local and remote version, flagging every difference. Exit 0 when all is well, 1 when "
    "something is flagged."
)
ORDER = 70


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    add_json_arg(parser)


def run(args: argparse.Namespace) -> int:
    from devloop.core.doctor import format_report, run_doctor

    config, profile, _ = resolve(args, need_file=False)

    async def main(stop: asyncio.Event) -> int:
        report = await run_doctor(config, profile)
        print(json.dumps(report.to_json()) if args.json else format_report(report), flush=True)
        return 0 if report.ok else 1

    return run_async(main)
