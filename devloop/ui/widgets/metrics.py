"""The live metric chart: `[ui] metrics` values from the output, one line per metric.

Drawn with braille dots (2x4 per cell) into a fixed-size text block: no plotting library
(plotext 6 changed its whole API; a chart this small needs none) and deterministic for
snapshots. Each metric is scaled to its own range (loss and accuracy differ by orders of
magnitude) and the legend gives its last value, best and range. Repainted at most every
REDRAW_S while values stream.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from devloop.core.metrics import MetricHistory, lower_is_better

COLOURS = ("cyan", "magenta", "yellow", "green", "bright_blue", "red")
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # braille bit per (row, col)


def braille_chart(series: list[tuple[list[float], str]], cols: int, rows: int) -> Text:
    """Lines through each series' values, each scaled to its own min..max, in cols x rows cells."""
    cols, rows = max(4, cols), max(1, rows)
    width, height = cols * 2, rows * 4
    cells: list[list[int]] = [[0] * cols for _ in range(rows)]
    owner: list[list[int]] = [[-1] * cols for _ in range(rows)]
    for number, (values, _colour) in enumerate(series):
        points = [v for v in values if math.isfinite(v)]
        if not points:
            continue
        if len(points) > width:  # newest `width` points keep their detail? no: the whole run, binned
            step = len(points) / width
            points = [points[min(len(points) - 1, int(i * step))] for i in range(width)]
        low, high = min(points), max(points)
        span = (high - low) or 1.0
        last_xy = None
        for i, value in enumerate(points):
            x = 0 if len(points) == 1 else round(i * (width - 1) / (len(points) - 1))
            y = height - 1 - round((value - low) / span * (height - 1))
            for px, py in _segment(last_xy, (x, y)):
                cells[py // 4][px // 2] |= _DOTS[py % 4][px % 2]
                owner[py // 4][px // 2] = number
            last_xy = (x, y)
    text = Text(no_wrap=True, end="")
    for r in range(rows):
        for c in range(cols):
            bits = cells[r][c]
            colour = series[owner[r][c]][1] if owner[r][c] >= 0 else None
            text.append(chr(0x2800 + bits) if bits else " ", style=colour)
        if r < rows - 1:
            text.append("\n")
    return text


def _segment(a: tuple[int, int] | None, b: tuple[int, int]) -> list[tuple[int, int]]:
    if a is None:
        return [b]
    (x0, y0), (x1, y1) = a, b
    n = max(abs(x1 - x0), abs(y1 - y0), 1)
    return [(round(x0 + (x1 - x0) * t / n), round(y0 + (y1 - y0) * t / n)) for t in range(1, n + 1)]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class MetricsPanel(Static):
    """The chart and a legend; hidden until a metric has a value."""

    DEFAULT_CSS = """
    MetricsPanel { height: 9; border: round $primary-darken-2; padding: 0 1; display: none; }
    MetricsPanel.-active { display: block; }
    """
    REDRAW_S = 0.25

    def __init__(self, names: tuple[str, ...] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = MetricHistory(names)
        self._dirty = False

    def on_mount(self) -> None:
        self.border_title = "metrics"
        self.set_interval(self.REDRAW_S, self._redraw_if_dirty)

    def add(self, name: str, value: float) -> None:
        self.history.add(name, value)
        self._dirty = True
        if not self.has_class("-active"):
            self.add_class("-active")

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        shown = [s for s in self.history.series.values() if s.values]
        if not shown:
            return
        inner = max(10, self.content_region.width or 36)
        legend = Text(no_wrap=True, end="")
        for number, series in enumerate(shown):
            colour = COLOURS[number % len(COLOURS)]
            if number:
                legend.append("\n")
            arrow = "↓" if lower_is_better(series.name) else "↑"
            legend.append(f"━ {series.name}", style=f"bold {colour}")
            legend.append(f" {_fmt(series.last)}  best{arrow} {_fmt(series.best)}"
                          f"  [{_fmt(min(series.values))}..{_fmt(max(series.values))}]", style="grey62")
        height = max(1, (self.content_region.height or 7) - len(shown))
        chart = braille_chart([(s.values, COLOURS[i % len(COLOURS)]) for i, s in enumerate(shown)],
                              inner, height)
        self.update(Text("\n").join([chart, legend]))
