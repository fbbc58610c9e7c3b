"""`devloop run`: one pass for CI -- sync, run every cell (or the script), stream, exit with its code."""

from __future__ import annotations

import argparse
import asyncio

from devloop.commands._common import UsageError, add_json_arg, add_target_args, fail, resolve, run_async

NAME = "run"
ORDER = 10
HELP = "run every cell of FILE (or the script) once on the target and exit with its result"
DESCRIPTION = (
    "Sync the project to the target, run every code cell of FILE from the top (stopping at the "
    "first failing cell) or run FILE as a script, stream the output, and exit: 0 when it all "
    "worked, 1 when your code failed (a script's own exit code is passed on), 2 for usage or "
    "configuration errors."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser)
    add_json_arg(parser)


def _gpu_tracker():
    """(record(event), summary_event()) when the GPU summary module is there."""
    try:
        from devloop.core.gpu import GpuStats
    except ImportError:  # pragma: no cover - only before the GPU module lands
        return (lambda e: None), (lambda: None)
    from devloop.core import events as ev

    stats = GpuStats()

    def record(event):
        if isinstance(event, ev.GpuSample):
            stats.add(event)

    def summary():
        rows = stats.summary()
        return ev.GpuSummary(gpus=tuple(rows)) if rows else None

    return record, summary


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
    record_gpu, gpu_summary = _gpu_tracker()

    def emit(event):
        record_gpu(event)
        reporter(event)

    async def main(stop: asyncio.Event) -> int:
        session = Session(config, profile, file, emit, verbose=verbose)
        try:
            await session.start()
            run_task = asyncio.create_task(session.run_all())
            stop_task = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if run_task not in done:
                await session.interrupt()
                try:
                    await asyncio.wait_for(run_task, 3)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    run_task.cancel()
                return 130
            stop_task.cancel()
            result = run_task.result()
            summary = gpu_summary()
            if summary is not None:
                emit(summary)
            return result.exit_code if result is not None else 0
        except SourceError as exc:
            return fail(str(exc))
        except TargetError as exc:
            return fail(str(exc))
        finally:
            await session.close()

    return run_async(main)
