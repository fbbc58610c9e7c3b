"""`devloop run`: one pass for CI -- sync, run every cell (or the script), stream, exit with its code."""

from __future__ import annotations

import argparse
import asyncio

from devloop.commands._common import add_json_arg, add_script_args, add_target_args, run_headless_session

NAME = "run"
ORDER = 10
HELP = "run every cell of FILE (or the script) once on the target and exit with its result"
DESCRIPTION = (
    "Sync the project to the target, run every code cell of FILE from the top (stopping at the "
    "first failing cell) or run FILE as a script, stream the output, and exit: 0 when it all "
    "worked, 1 when your code failed (a script's own exit code is passed on), 2 for usage or "
    "configuration errors. When `devloop watch` or `up` left a session running for this profile, "
    "the run attaches to it, runs only the cells that changed or are not ok yet, and leaves it running."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser)
    add_script_args(parser)
    add_json_arg(parser)
    parser.add_argument("--junit", metavar="XML",
                        help="also write the run as JUnit XML to this file (one testcase per code "
                             "cell, failures with file:line and traceback; for GitLab, Jenkins and "
                             "GitHub test reports). Under GITHUB_ACTIONS=true a Markdown summary is "
                             "appended to $GITHUB_STEP_SUMMARY either way")


def run(args: argparse.Namespace) -> int:
    from devloop.core import events as ev
    from devloop.core.gpu import GpuStats

    from devloop.commands._run_report import RunReport

    stats = GpuStats()
    report = RunReport(args)

    def observe(event: ev.Event) -> None:
        if isinstance(event, ev.GpuSample):
            stats.add(event)
        report(event)

    async def body(session, stop: asyncio.Event, emit) -> int:  # noqa: ANN001 - Session, Emit
        run_task = asyncio.create_task(session.first_pass())
        stop_task = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the run ends now (a second Ctrl-C, the reader left)
            run_task.cancel()
            stop_task.cancel()
            raise
        if run_task not in done:
            await session.interrupt()
            try:
                await asyncio.wait_for(run_task, 3)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                run_task.cancel()
            return 130
        stop_task.cancel()
        result = run_task.result()
        rows = stats.summary()
        if rows:
            emit(ev.GpuSummary(gpus=tuple(rows)))
        return result.exit_code if result is not None else 0

    from devloop.commands._common import UsageError, resolve

    try:
        resolved = resolve(args)
    except UsageError:
        resolved = None  # run_headless_session reports it
    if resolved is not None:
        handed = _hand_over(args, resolved, observe)
        if handed is not None:
            return report.finish(handed, resolved)
    # a live session of this project + profile is attached to (and left running); without one
    # the kernel ends with the run: CI leaves nothing behind
    code = run_headless_session(args, body, observe, mode="auto", resolved=resolved,
                                leave_running=lambda session: session.attached_existing)
    return report.finish(code, resolved)


def _hand_over(args: argparse.Namespace, resolved: tuple, observe) -> int | None:  # noqa: ANN001
    """When `devloop up` / `watch` runs for this project and profile, the run happens in its live
    kernel (the cells that changed or are not ok) and its events are printed here; None: no
    live front end answered, take the normal path."""
    import sys
    from pathlib import Path

    from devloop.commands._common import run_async
    from devloop.core import control
    from devloop.core import events as ev
    from devloop.headless import Reporter

    config, profile, _file = resolved
    root = Path(config.root)
    if not control.is_live(root, profile.name):
        return None
    reporter = Reporter(json_lines=getattr(args, "json", False), verbose=getattr(args, "verbose", 0) or 0)

    request = {"op": "run", "file": str(Path(_file).resolve()) if _file else None,
               "args": [str(a) for a in (getattr(config.run, "args", ()) or ())]}

    async def main(stop: asyncio.Event) -> int | None:
        answered = False
        async for msg in control.request(root, profile.name, request):
            answered = True
            if "done" in msg:
                return int(msg["done"])
            if msg.get("ok") is False:
                if msg.get("error"):  # the live session runs another file or other arguments
                    print(f"devloop run: {msg['error']}", file=sys.stderr)
                    return 2
                return None
            try:
                event = ev.from_json(msg)
            except ValueError:
                continue
            observe(event)
            reporter(event)
        return None if not answered else 1

    code = run_async(main)
    return code
