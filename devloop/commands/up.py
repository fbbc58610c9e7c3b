"""`devloop up`: the full-screen app -- start the target, run a first pass, watch, on one screen."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from devloop.commands._common import UsageError, add_forward_arg, add_script_args, add_target_args, fail, resolve

NAME = "up"
ORDER = 5
HELP = ("the full-screen app: run FILE on a target, rerun on save, logs and GPU gauges "
        "(d detaches, q quits)")
DESCRIPTION = (
    "Start the profile's target, sync the project, run every cell of FILE once (attached to a live "
    "session: only the cells that changed or are not ok there), then rerun the "
    "changed cells on every save -- with the cells, their logs, GPU gauges and the sync state on "
    "one screen. Keys: r rerun the selected cell, a run all, i interrupt, k restart the kernel, "
    "s sync now, w watch on/off, p promote, t switch profile, f filter the log by cell, / search, "
    "enter on a failed cell shows its traceback, d detach (the session keeps running on the "
    "target: `devloop attach` comes back to it), q quit (the session ends, the target is cleaned up; "
    "while a cell runs it asks first: y stop, d detach instead, esc cancel; ctrl+c is q). "
    "ctrl+p lists every command."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_target_args(parser)
    add_forward_arg(parser)
    add_script_args(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config, profile, file = resolve(args)
    except UsageError as exc:
        return fail(str(exc))
    verbose = getattr(args, "verbose", 0) or 0
    # Imported here: `devloop run` / `watch` never pay for textual.
    from devloop.core.host import SessionHost
    from devloop.ui.app import DevloopApp

    def host_factory(profile_name: str) -> SessionHost:
        return SessionHost.for_profile(config, config.profile(profile_name), file, verbose=verbose,
                                       mode="session", forward=tuple(getattr(args, "forward", None) or ()))

    from devloop.core.promote import promote
    from devloop.core.promote.cite import preview as promote_cite

    app = DevloopApp(
        config=config,
        profile=profile.name,
        file=_shown(file, Path(config.root)),
        host_factory=host_factory,
        promote=promote,
        promote_targets=_promote_targets(config),
        promote_cite=promote_cite,
        verbose=verbose,
    )
    code = app.run()
    return int(code or 0)


def _shown(file: Path | None, root: Path) -> str:
    if file is None:
        return ""
    root = root.resolve()
    return file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)


def _promote_targets(config: Any) -> tuple[str, ...]:
    """The configured targets first, then the others promote knows (the dialog offers them all)."""
    configured = tuple(getattr(getattr(config, "promote", None), "targets", ()) or ())
    return configured + tuple(t for t in ("argo", "github") if t not in configured)
