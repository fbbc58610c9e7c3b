"""Shared plumbing for the commands that run code: flags, config + file resolution, signals."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from devloop.core.config import load_config


def add_target_args(parser: argparse.ArgumentParser, *, file: bool = True) -> None:
    if file:
        parser.add_argument("file", nargs="?", metavar="FILE",
                            help="the Python file to run: a '# %%%%' cell file or a plain script "
                                 "(default: [project].entry in devloop.toml)")
    parser.add_argument("-p", "--profile", metavar="P",
                        help="where to run: a profile name from profiles/ (default: [project].profile, "
                             "else the built-in 'local')")


def add_script_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script_args", nargs="*", metavar="-- ARGS",
                        help="arguments for FILE after '--' (`devloop run train.py -- --epochs 3`): "
                             "its sys.argv[1:], as `python train.py --epochs 3` gives them; "
                             "they replace [run].args of devloop.toml")


def add_forward_arg(parser: argparse.ArgumentParser) -> None:
    def spec(text: str) -> str:
        from devloop.core.ports.spec import parse_spec

        try:
            return parse_spec(text).text
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument("--forward", action="append", metavar="SPEC", default=[], type=spec,
                        help="forward a port while the session runs: localhost:LOCAL reaches REMOTE "
                             "inside the target (SPEC: PORT, LOCAL:REMOTE or LOCAL:HOST:REMOTE; "
                             "repeatable; adds to [ports].forward and the profile's forward:, "
                             "replacing an entry for the same local port)")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line (key 'event') instead of readable text")


class UsageError(Exception):
    """Bad command-line input: exit code 2 with the message."""


def resolve(args: argparse.Namespace, *, need_file: bool = True) -> tuple[Any, Any, Path | None]:
    """(config, profile, file) from the flags: config found from the current folder upward; a
    file outside that project, with no devloop.toml around, makes the file's folder the root."""
    cwd = Path.cwd()
    config = load_config(cwd)
    file: Path | None = None
    name = getattr(args, "file", None) or (config.project.entry if need_file else None)
    if name:
        file = Path(name)
        if not file.is_absolute():
            file = (cwd / file) if getattr(args, "file", None) else (Path(config.root) / file)
        file = file.resolve()
        if not file.exists():
            from devloop.core.hints import nearest_file

            near = nearest_file(file)
            command = getattr(args, "command", None) or "run"
            fix = (f"did you mean {near}? (devloop {command} {near})" if near else "check the path")
            raise UsageError(f"{name}: no such file -- fix: {fix}"
                             + ("" if getattr(args, "file", None) else " of [project].entry in devloop.toml"))
        root = Path(config.root).resolve()
        if root not in file.parents:
            if config.file is None:
                config = load_config(file.parent)
            else:
                raise UsageError(f"{file} is outside the project {root} (from {config.file}) "
                                 "-- fix: run devloop from the file's own project folder")
    elif need_file:
        from devloop.core.project_template import python_files

        command = getattr(args, "command", None) or "run"
        files = python_files(Path(config.root))
        example = files[0] if len(files) == 1 else "train.py"
        raise UsageError(f"no file to run -- fix: name one (devloop {command} {example}) or set "
                         f"[project].entry in devloop.toml (entry = \"{example}\")")
    profile = config.profile(getattr(args, "profile", None))
    script_args = getattr(args, "script_args", None)
    if script_args:  # `-- ARGS` on the command line replace [run].args
        import dataclasses

        config = dataclasses.replace(config, run=dataclasses.replace(config.run, args=tuple(script_args)))
    return config, profile, file


def run_async(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run `main(stop)`; SIGINT/SIGTERM set `stop` first, a second one cancels outright.

    `main` must clean up (stop the target) in a finally block: nothing is left behind."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()
        hits = {"n": 0}

        def on_signal(signame: str) -> None:
            hits["n"] += 1
            stop.set()
            if hits["n"] >= 2 and task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal, sig.name)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
                pass
        try:
            return await main(stop)
        except asyncio.CancelledError:
            return 130

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        return 130


def fail(message: str) -> int:
    print(f"devloop: {message}", file=sys.stderr)
    return 2


def run_headless_session(args: argparse.Namespace,
                         body: Callable[[Any, asyncio.Event, Callable[[Any], None]], Awaitable[int]],
                         observe: Callable[[Any], None] | None = None, *, mode: str = "plain",
                         leave_running: Callable[[Any], bool] = lambda session: False,
                         resolved: tuple[Any, Any, Path | None] | None = None) -> int:
    """Resolve the target, start a Session in a host whose events go to `observe` (if any) and
    the headless reporter, then return `body(session, stop, emit)` (`emit` publishes through the
    host). Target and source errors become one line and exit 2; the target is always cleaned
    up, whatever ends the run. `resolved`: (config, profile, file) the caller resolved already."""
    from devloop.core.host import SessionHost
    from devloop.core.session import SourceError
    from devloop.core.targets.base import TargetError
    from devloop.headless import Reporter

    try:
        config, profile, file = resolved if resolved is not None else resolve(args)
    except UsageError as exc:
        return fail(str(exc))
    verbose = getattr(args, "verbose", 0) or 0
    reporter = Reporter(json_lines=getattr(args, "json", False), verbose=verbose)

    async def main(stop: asyncio.Event) -> int:
        host = SessionHost.for_profile(config, profile, file, verbose=verbose, mode=mode,
                                       forward=tuple(getattr(args, "forward", None) or ()))
        me = asyncio.current_task()
        gone: list[BrokenPipeError] = []

        def report(event: Any) -> None:
            try:
                reporter(event)
            except BrokenPipeError as exc:  # `devloop run --json | head`: the reader left
                if not gone:
                    gone.append(exc)
                    if not host.closed and me is not None:
                        me.cancel()  # the run ends here; the cli then exits 141, quietly
                raise  # and the host drops this listener

        if observe is not None:
            host.subscribe(observe)
        host.subscribe(report)
        session = host.create()
        from devloop.headless_stdin import StdinFeeder

        host.subscribe(StdinFeeder(session))  # a cell's input() reads our stdin (pipe or terminal)
        try:
            await host.start()
            code = await body(session, stop, host.publish)
        except (SourceError, TargetError) as exc:
            code = fail(str(exc))
        except asyncio.CancelledError:
            if not gone:
                raise
            me.uncancel()  # the cancel was ours: closing below must not be cut short
            code = 141
        finally:
            if leave_running(session) and not gone:
                await host.detach()
            else:
                await host.close()
        if gone:
            raise gone[0]
        return code

    return run_async(main)
