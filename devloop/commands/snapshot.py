"""`devloop snapshot`: commit the profile's dev container and record it for promote."""

from __future__ import annotations

import argparse
import asyncio
import json

from devloop.commands._common import add_json_arg, add_target_args, fail, resolve, run_async

NAME = "snapshot"
HELP = "commit the dev container (docker commit) and record it in .devloop/snapshots.jsonl"
DESCRIPTION = (
    "Commit the profile's dev container as it is now (installed packages and synced code "
    "included) and append a record -- image, image id, repo digest, git commit, dirty flag, time, "
    "run id -- to .devloop/snapshots.jsonl: the image `devloop promote` pins. Uses the running "
    "container (keep: true) or starts one from the profile."
)
ORDER = 75


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    add_json_arg(parser)
    parser.add_argument("--run-id", metavar="ID",
                        help="the run id to record (default: the latest green run of this code on "
                             "this profile and image in .devloop/runs.jsonl, which promote then "
                             "cites; else a new uuid)")


def run(args: argparse.Namespace) -> int:
    from devloop.core.targets import create_target

    config, profile, _ = resolve(args, need_file=False)
    if profile.kind != "docker":
        return fail(f"profile {profile.name!r} is kind {profile.kind!r}: only docker targets take "
                    "snapshots -- fix: pass --profile with a docker profile")

    async def main(stop: asyncio.Event) -> int:
        target = create_target(profile, config)
        try:
            info = await target.start()
            await _sync_project(target, config, profile)
            run_id = args.run_id
            if not run_id:  # the green run this image holds the code of: promote cites it
                from devloop.core.promote.cite import green_run_on

                run_id = green_run_on(config, profile.name, info.image, info.image_digest) or None
            snap = await target.snapshot(run_id=run_id)
        finally:
            await target.stop()
        record = {k: snap.details.get(k) for k in
                  ("image", "image_id", "repo_digest", "git_commit", "dirty", "time", "run_id", "profile")}
        record["image"], record["image_id"] = snap.image, snap.image_id
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"snapshot {snap.image} ({snap.image_id[:19]}) of profile {profile.name}, "
                  f"git {record['git_commit'][:12] or '-'}{' (dirty)' if record['dirty'] else ''}, "
                  f"run id {record['run_id']}", flush=True)
        return 0

    return run_async(main)


async def _sync_project(target, config, profile) -> None:
    """Bring the container's workdir up to the project as it is now (the snapshot holds the code);
    run the profile's `setup` when dependency files arrive, as a session would."""
    from devloop.core.sync.syncer import Syncer

    syncer = Syncer(target, config.root, tuple(config.sync.exclude or ()))  # no local record kept
    try:
        plan = (await syncer.sync_now()).plan
    finally:
        await syncer.close()
    if plan is None:
        return
    if plan.dependency_files and profile.setup:
        channel = await target.spawn(["sh", "-c", profile.setup], cwd=target.info.workdir)
        await channel.close_stdin()
        while await channel.readline():
            pass
        code = await channel.wait()
        if code != 0:
            from devloop.core.targets.base import TargetError

            raise TargetError(f"setup ({profile.setup}) exited with code {code}: {channel.stderr_tail()[-300:]}",
                              hint=f"fix `setup:` in profile {profile.name!r}; nothing was snapshotted")
