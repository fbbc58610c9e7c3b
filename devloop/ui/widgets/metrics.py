"""The live metric chart: `[ui] metrics` values from the output, one line per metric.

Drawn with textual-plot's `PlotWidget` (`metrics_chart.Chart`: braille lines in a framed plot
area, ticks on both axes; pure Textual, so snapshots are stable), loaded only once a metric is
named or arrives (it brings numpy). x is the metric's step (its n-th value). textual-plot has
one y axis, and loss and accuracy differ by orders of magnitude, so:
  - one metric: its real values on the y axis;
  - several: each line is scaled to its own min..max and the y axis reads `min` .. `max` (a
    shared real axis would flatten accuracy against loss; a log axis hides a 0.90 -> 0.95
    accuracy gain); the legend gives each metric's real last value, best and [min..max].
Ticks are chosen here to fit the width (textual-plot's own pick overlaps in a narrow panel). A
long run is thinned to the chart's dot width before plotting, so the whole run stays in view.
Repainted at most every REDRAW_S while values stream, on the event loop: 1-5 ms here plus ~7 ms
of textual-plot rendering for two series of 100 to 10,000 values (benchmarks/bench_metrics.py).
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from devloop.core.metrics import MetricHistory, lower_is_better

COLOURS = ("cyan", "magenta", "yellow", "green", "bright_blue", "red")


def nice_ticks(low: float, high: float, most: int, *, whole: bool = False) -> list[float]:
    """Ticks at 1, 2, 5 x 10^k steps between low and high, at most `most` of them (textual-plot's
    own pick can ask for 8 in 18 columns, and the labels then run into each other). `whole`:
    steps of at least 1 (the x axis counts values)."""
    span = high - low
    if not (span > 0 and math.isfinite(span)) or most < 1:
        return []
    step = 10.0 ** math.floor(math.log10(span / most))
    if whole:
        step = max(1.0, step)
    while step <= span:
        for factor in (1, 2, 5):
            interval = step * factor
            first = math.ceil(low / interval - 1e-9)
            count = max(0, math.floor((high - first * interval) / interval + 1e-9) + 1)
            if 1 <= count <= most:
                return [round((first + i) * interval, 12) for i in range(count)]
        step *= 10
    return []


def thin(values: list[float], points: int) -> tuple[list[float], list[float]]:
    """(steps, values) of at most `points` values spread over the whole run (the last one always
    kept: it is the value the legend names), without the nan / inf ones."""
    n = len(values)
    picks = range(n) if n <= points or points < 2 else \
        sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    pairs = [(i + 1.0, values[i]) for i in picks if math.isfinite(values[i])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class MetricsPanel(Vertical):
    """The chart and a legend; hidden until a metric has a value."""

    DEFAULT_CSS = """
    MetricsPanel {
        height: 2fr; min-height: 9; max-height: 12;  /* shares the side column with the cells list */
        border: round $primary-darken-2; padding: 0 1; display: none;
    }
    MetricsPanel.-active { display: block; }
    MetricsPanel > .chart { height: 1fr; min-height: 4; }
    MetricsPanel > .legend { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    Screen.-narrow MetricsPanel { height: 100%; width: 1fr; }
    """
    SCOPED_CSS = False  # the narrow rule starts at Screen
    REDRAW_S = 0.25

    def __init__(self, names: tuple[str, ...] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = MetricHistory(names)
        self._dirty = False
        self._owners: dict[str, int] = {}  # metric -> the cell whose output it came from

    def reset(self) -> None:
        """Another profile: none of the old session's values stay (the names stay: `[ui] metrics`)."""
        for series in self.history.series.values():
            series.values.clear()
        self._owners.clear()
        self._dirty = False
        self.remove_class("-active")

    def cell_started(self, cell: int) -> None:
        """A cell (re)runs: the metrics it printed start again, as its output does (a script is
        cell 0, so every pass draws a fresh run). A metric another cell printed is kept."""
        for name, owner in list(self._owners.items()):
            if owner == cell and name in self.history.series:
                self.history.series[name].values.clear()
                del self._owners[name]
                self._dirty = True

    def compose(self) -> ComposeResult:
        yield Static(classes="legend")

    def on_mount(self) -> None:
        self.border_title = "metrics"
        self.set_interval(self.REDRAW_S, self._redraw_if_dirty)
        if self.history.series:  # named in `[ui] metrics` (or added): textual-plot loads now
            self._chart()

    def add(self, name: str, value: float, cell: int | None = None) -> None:
        if cell is not None:
            self._owners.setdefault(name, cell)
        self.history.add(name, value)
        self._dirty = True
        if not self.has_class("-active"):
            self.add_class("-active")
            if self.is_mounted:  # else on_mount makes it
                self._chart()

    def _chart(self):  # noqa: ANN202 - metrics_chart.Chart, imported here (numpy)
        """The chart widget, mounted above the legend the first time it is asked for."""
        from devloop.ui.widgets.metrics_chart import Chart

        found = self.query(Chart)
        if found:
            return found.first()
        chart = Chart(allow_pan_and_zoom=False, classes="chart")
        self.mount(chart, before=0)
        return chart

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        shown = [s for s in self.history.series.values() if s.values]
        if not shown:
            return
        legend = self.query_one(".legend", Static)
        legend.update(self._legend(shown, self.content_region.width or 44))
        from devloop.ui.widgets.metrics_chart import HiResMode, NumericAxisFormatter, RangeAxis

        plot = self._chart()
        if not plot.is_mounted or not plot.size:  # mounted a moment ago: the next tick draws it
            self._dirty = True
            return
        lines = [(thin(s.values, 2 * max(4, plot.size.width)), COLOURS[i % len(COLOURS)])
                 for i, s in enumerate(shown)]
        lines = [(steps, values, colour) for (steps, values), colour in lines if values]
        plot.clear()
        if not lines:
            return
        if len(lines) == 1:  # real values
            steps, values, colour = lines[0]
            low, high = min(values), max(values)
            if low == high:
                low, high = low - 0.5 * (abs(low) or 1), high + 0.5 * (abs(high) or 1)
            rows = plot.size.height - plot.margin_top - plot.margin_bottom - 2
            yticks = nice_ticks(low, high, max(2, (rows + 2) // 2))  # a blank row between labels
            labels = NumericAxisFormatter().get_labels_for_ticks(yticks)
            margin = max((len(label) for label in labels), default=1) + 2
        else:  # each scaled to its own min..max
            scaled = []
            for steps, values, colour in lines:
                low, high = min(values), max(values)
                scaled.append((steps, [(v - low) / (high - low) if high > low else 0.5 for v in values],
                               colour))
            lines, low, high, yticks, margin = scaled, 0.0, 1.0, None, 5
        if plot.margin_left != margin:
            plot.margin_left = margin
            plot.refresh(layout=True)  # textual-plot resizes its canvas only on a layout refresh
        plot.set_y_formatter(NumericAxisFormatter() if yticks is not None else RangeAxis())
        plot.set_yticks(yticks)
        plot.set_ylimits(low, high)
        last_step = max(2, max(len(s.values) for s in shown))
        plot.set_xlimits(1, last_step)
        columns = plot.size.width - margin - 2
        plot.set_xticks(nice_ticks(1, last_step, max(1, columns // 6), whole=True)  # room for "10000 "
                        or [last_step])
        for steps, values, colour in lines:
            if len(values) == 1:  # a line needs two points
                plot.scatter(steps, values, marker_style=colour, hires_mode=HiResMode.BRAILLE)
            else:
                plot.plot(steps, values, line_style=colour, hires_mode=HiResMode.BRAILLE)

    def _legend(self, shown, width: int) -> Text:  # noqa: ANN001 - list of core.metrics.Series
        """`━ loss 0.1193  best↓ 0.0649  [0.0649..2.158]` per metric; narrower, the first of
        `━ loss 0.1193 ↓0.0649`, `loss 0.1193 ↓0.0649` (the name's colour names the line),
        `━ loss 0.1193` that fits (the range goes first: the chart shows it)."""
        legend = Text(no_wrap=True, overflow="ellipsis", end="")
        for number, series in enumerate(shown):
            colour = COLOURS[number % len(COLOURS)]
            if number:
                legend.append("\n")
            arrow = "↓" if lower_is_better(series.name) else "↑"
            last, best = _fmt(series.last), _fmt(series.best)
            finite = [v for v in series.values if math.isfinite(v)]
            span = f"  [{_fmt(min(finite))}..{_fmt(max(finite))}]" if finite else ""
            choices = [("━ ", f" {last}  best{arrow} {best}{span}"), ("━ ", f" {last} {arrow}{best}"),
                       ("", f" {last} {arrow}{best}"), ("━ ", f" {last}")]
            fits = [c for c in choices if len(c[0]) + len(series.name) + len(c[1]) <= width]
            marker, rest = fits[0] if fits else choices[1]
            legend.append(f"{marker}{series.name}", style=f"bold {colour}")
            legend.append(rest, style="grey62")
        return legend
