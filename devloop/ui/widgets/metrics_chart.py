"""textual-plot's pieces for the metric panel, in their own module: textual-plot imports numpy
(~100 ms), so the app loads this only when `[ui] metrics` names something (or a value arrives)."""

from __future__ import annotations

from textual.reactive import reactive
from textual_plot import AxisFormatter, HiResMode, NumericAxisFormatter, PlotWidget

__all__ = ["Chart", "HiResMode", "NumericAxisFormatter", "RangeAxis"]


class RangeAxis(AxisFormatter):
    """The y axis of several metrics scaled to their own ranges: 0 is each one's min, 1 its max."""

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        return [0.0, 1.0]

    def get_labels_for_ticks(self, ticks) -> list[str]:  # noqa: ANN001 - a sequence of floats
        return ["min" if t <= 0.5 else "max" for t in ticks]


class Chart(PlotWidget, can_focus=False):
    """textual-plot's widget without its keys (arrows, r, +/- must stay the app's) and with one
    margin row for the x tick labels (no axis titles: the border title says what this is)."""

    margin_top = reactive(0)
    margin_bottom = reactive(1)
    margin_left = reactive(5)
