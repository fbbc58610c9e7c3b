"""`devloop gpu`: what the GPUs look like from INSIDE the target (utilisation, memory,
temperature, power, processes), sampled by the agent there, as a table or JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import json

from devloop.commands._common import add_json_arg, add_target_args, fail, resolve, run_async

NAME = "gpu"
HELP = "show the GPUs the target sees: utilisation, memory, temperature, power, processes"
DESCRIPTION = (
    "Start the target of a profile, sample its GPUs from inside (NVML through pynvml if the "
    "target's Python has it, else nvidia-smi) and print a table, or JSON lines with --json. "
    "Exit 0 when GPUs were seen, 1 when the target has none (the reason is printed)."
)
ORDER = 60


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser, file=False)
    add_json_arg(parser)
    parser.add_argument("-w", "--watch", action="store_true",
                        help="keep sampling until Ctrl-C")
    parser.add_argument("--interval", type=int, metavar="MS",
                        help="milliseconds between samples with --watch (default: [gpu].interval_ms "
                             "in devloop.toml, 1000)")


def run(args: argparse.Namespace) -> int:
    config, profile, _ = resolve(args, need_file=False)
    interval_ms = args.interval if args.interval is not None else config.gpu.interval_ms
    if interval_ms <= 0:
        return fail(f"--interval must be a positive number of milliseconds, got {interval_ms} "
                    "-- fix: e.g. --interval 1000")

    async def main(stop: asyncio.Event) -> int:
        return await _sample_in_target(profile, config, args, interval_ms / 1000.0, stop)

    code = run_async(main)
    return 0 if code == 130 and args.watch else code


async def _next_line(channel, stop: asyncio.Event) -> bytes:
    """The channel's next line, or b"" once `stop` is set (Ctrl-C)."""
    read = asyncio.ensure_future(channel.readline())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if read.done():
        return read.result()
    read.cancel()
    return b""


async def _sample_in_target(profile, config, args: argparse.Namespace, interval_s: float,
                            stop: asyncio.Event) -> int:
    from devloop.core.gpu import format_sample, gpu_sample_from_agent
    from devloop.core.targets import create_target
    from devloop.core.targets.base import TargetError

    target = create_target(profile, config)
    mode_args = ["--interval", f"{interval_s:g}"] if args.watch else []
    channel = None
    seen_gpu = False
    samples = 0
    try:
        await target.start()
        channel = await target.spawn(target.agent_argv("gpu", *mode_args))
        while True:
            line = await _next_line(channel, stop)
            if not line:
                break
            try:
                data = json.loads(line)
            except ValueError:
                continue  # not the agent's JSON (a shell banner): skip
            if not isinstance(data, dict) or data.get("type") != "gpu":
                continue
            samples += 1
            sample = gpu_sample_from_agent(data)
            seen_gpu = seen_gpu or (sample.available and bool(sample.gpus))
            if args.json:
                print(json.dumps(sample.to_json()), flush=True)
            else:
                if args.watch and samples > 1:
                    print(flush=True)
                print("\n".join(format_sample(sample)), flush=True)
            if not args.watch:
                break
        if samples == 0 and not stop.is_set():
            code = await channel.wait()
            raise TargetError(
                f"the agent's gpu mode in profile {profile.name!r} printed nothing (exit {code}): "
                f"{channel.stderr_tail().strip()[-500:] or 'no error output'}",
                hint=f"check that python3 runs in the target, or set `python:` in profile {profile.name!r}",
            )
    finally:
        if channel is not None:
            await channel.kill()
        await target.stop()
    if stop.is_set() and args.watch:
        return 0
    return 0 if seen_gpu else 1
