"""`devloop sessions`: the sessions this project left running on its targets, and their state."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from devloop.commands._common import add_json_arg, fail, run_async

NAME = "sessions"
ORDER = 25
HELP = "list the sessions (kernels that outlive devloop) this project has running on its targets"
DESCRIPTION = (
    "For each session this project started (`devloop watch`, `up`): the profile, the target, the "
    "session id, when it started, how long it has been idle, the running cell, each cell's state, "
    "the GPU memory it holds and when its idle stop ends it. Looking never takes over the front end "
    "that is attached. `devloop attach -p P` opens one in the app, `devloop stop -p P` ends it."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_json_arg(parser)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _row(d: dict) -> list[str]:
    if d.get("error"):
        state = "unreachable"
    elif d.get("live"):
        state = "attached" if d.get("attached") else "detached"
    else:
        state = "ended"
    cells = " ".join(f"{k}:{v}" for k, v in (d.get("cells") or {}).items()) or "-"
    running = "-" if d.get("running_cell") is None else str(d["running_cell"])
    gpu = "-" if not d.get("gpu_memory_bytes") else f"{d['gpu_memory_bytes'] / 2**30:.1f}GiB"
    stops = "never" if not d.get("idle_stop_s") else ("-" if d.get("stops_in_s") is None else _ago(d["stops_in_s"]))
    return [d["profile"], f"{d['kind']} {d['target']}", d["session"][:8], _ago(time.time() - d["started"]) + " ago",
            state, _ago(d.get("idle_s")), running, cells, gpu, stops]


def run(args: argparse.Namespace) -> int:
    from devloop.core import session_record, session_ops
    from devloop.core.config import load_config
    from pathlib import Path

    config = load_config(Path.cwd())
    records = session_record.all_records(Path(config.root))

    async def main(stop: asyncio.Event) -> int:
        rows = await asyncio.gather(*(session_ops.inspect(config, r) for r in records))
        if args.json:
            for d in rows:
                print(json.dumps({"event": "session", **d}))
            return 0
        if not rows:
            print("no sessions: `devloop watch` or `devloop up` starts one")
            return 0
        head = ["PROFILE", "TARGET", "SESSION", "STARTED", "STATE", "IDLE", "RUNNING", "CELLS", "GPU MEM", "IDLE STOP IN"]
        table = [head] + [_row(d) for d in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        for r in table:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        for d in rows:
            if d.get("error"):
                print(f"{d['profile']}: {d['error']}")
        return 0

    try:
        return run_async(main)
    except Exception as exc:  # noqa: BLE001 - a config error is one line
        return fail(str(exc))
