"""What one repaint of the live metric chart costs the event loop, by run length.

A `MetricsPanel` (48 x 12, as in the 120x40 app) holding N values each of `loss` and `val_acc`:
  redraw     `MetricsPanel.redraw()`: legend (last, best, range over all values), thinning to
             the chart's dot width, the textual-plot calls
  render     textual-plot's `_render_plot()`: the braille lines, axes and ticks onto its canvas
             (Textual runs it on the next refresh)
Both run on the event loop, at most every REDRAW_S (0.25 s) while values stream. Medians of
--runs repaints after one warm-up, and the share of the 0.25 s period they take.

    python3 benchmarks/bench_metrics.py [--runs 21]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.app import App, ComposeResult  # noqa: E402

from devloop.ui.widgets.metrics import MetricsPanel  # noqa: E402
from devloop.ui.widgets.metrics_chart import Chart  # noqa: E402

LENGTHS = (100, 1_000, 10_000)


class PanelApp(App):
    def compose(self) -> ComposeResult:
        yield MetricsPanel(("loss", "val_acc"), id="metrics")


async def measure(values: int, runs: int) -> tuple[float, float]:
    app = PanelApp()
    async with app.run_test(size=(48, 12)) as pilot:
        panel = app.query_one(MetricsPanel)
        for step in range(1, values + 1):
            panel.add("loss", 2.3 * math.exp(-step / (values / 4)) + 0.05 * math.sin(step))
            panel.add("val_acc", 1 - 0.9 * math.exp(-step / (values / 5)))
        panel.redraw()
        await pilot.pause()
        chart = panel.query_one(Chart)
        redraw, render = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            panel.redraw()
            t1 = time.perf_counter()
            chart._render_plot()
            t2 = time.perf_counter()
            redraw.append(t1 - t0)
            render.append(t2 - t1)
        return statistics.median(redraw) * 1000, statistics.median(render) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="repaints measured per length (median)")
    args = parser.parse_args()
    print(f"{'values/metric':>14} {'redraw ms':>10} {'render ms':>10} {'of 0.25 s':>10}")
    for values in LENGTHS:
        redraw, render = asyncio.run(measure(values, args.runs))
        share = (redraw + render) / (MetricsPanel.REDRAW_S * 1000) * 100
        print(f"{values:>14,} {redraw:>10.2f} {render:>10.2f} {share:>9.1f}%")


if __name__ == "__main__":
    main()
