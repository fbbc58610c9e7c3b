"""Runs the app on a real terminal driver (the pty the test gives it) with one fixed figure in
the log, then exits: `python -m tests.ui.inline_graphics_app PROJECT MODE`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from devloop.ui.app import DevloopApp
from tests.ui.test_snapshots_display import FIGURE, config, fixed_png, plot_cell


def main() -> None:
    root, mode = Path(sys.argv[1]), sys.argv[2]
    fixed_png(root / FIGURE)
    cfg = config(root)
    cfg.ui.images = mode
    app = DevloopApp(config=cfg, profile="docker-gpu", file="train.py")

    async def show_a_figure_then_exit() -> None:
        await asyncio.sleep(0.3)
        app.feed(plot_cell())
        await asyncio.sleep(0.3)
        await asyncio.gather(*app.figure_jobs)
        app.flush_log()
        await asyncio.sleep(0.7)
        app.exit()

    app.call_later(lambda: asyncio.ensure_future(show_a_figure_then_exit()))
    app.run()


if __name__ == "__main__":
    main()
