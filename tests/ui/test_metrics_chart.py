"""The metric panel's chart (issue 15 item 5), drawn with textual-plot: ticks that fit, a long run
thinned to the dots there are, one metric on its real scale, several each on its own, and a panel
that never takes the focus or the app's keys."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from textual.app import App, ComposeResult

from devloop.ui.widgets.metrics import MetricsPanel, nice_ticks, thin
from devloop.ui.widgets.metrics_chart import Chart


@pytest.mark.parametrize(("low", "high", "most", "whole", "ticks"), [
    (1, 40, 7, True, [10, 20, 30, 40]),
    (1, 40, 3, True, [20, 40]),
    (1, 40, 1, True, []),  # no single 1-2-5 step fits: the caller names the last step instead
    (1, 2, 7, True, [1, 2]),  # steps are whole numbers
    (0.0649, 2.158, 4, False, [0.5, 1.0, 1.5, 2.0]),
    (-3e-5, 2e-5, 3, False, [-2e-5, 0.0, 2e-5]),
    (0.9, 0.91, 3, False, [0.9, 0.905, 0.91]),
    (0.5, 0.5, 3, False, []),
])
def test_nice_ticks_never_more_than_fit(low, high, most, whole, ticks) -> None:
    assert nice_ticks(low, high, most, whole=whole) == pytest.approx(ticks)


def test_a_long_run_is_thinned_over_its_whole_length_and_keeps_its_last_value() -> None:
    values = [1 / (i + 1) for i in range(10_000)]
    steps, kept = thin(values, 80)
    assert len(kept) == 80 and steps[0] == 1 and steps[-1] == 10_000 and kept[-1] == values[-1]
    steps, kept = thin([1.0, math.nan, 0.5, math.inf, 0.25], 80)
    assert steps == [1, 3, 5] and kept == [1.0, 0.5, 0.25]


class PanelApp(App):
    BINDINGS = [("r", "rerun", "rerun")]
    reruns = 0

    def compose(self) -> ComposeResult:
        yield MetricsPanel(("loss", "val_acc"), id="metrics")

    def action_rerun(self) -> None:
        self.reruns += 1


def _plain(app: App) -> str:
    """The screen as plain text."""
    from io import StringIO

    from rich.console import Console

    console = Console(width=app.size.width, height=app.size.height, file=StringIO(), record=True,
                      force_terminal=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def test_one_metric_reads_real_values_several_read_min_to_max() -> None:
    app = PanelApp()
    async with app.run_test(size=(48, 14)) as pilot:
        panel = app.query_one(MetricsPanel)
        assert not panel.display  # hidden until a value arrives
        for value in (2.0, 1.0, 0.5, 0.25):
            panel.add("loss", value)
        panel.redraw()
        await pilot.pause()
        text = _plain(app)
        assert panel.display and " 2.0 " in text and " 1.0 " in text and " max " not in text
        assert "━ loss 0.25  best↓ 0.25  [0.25..2]" in text
        for value in (0.1, 0.5, 0.9, 0.95):
            panel.add("val_acc", value)
        panel.redraw()
        await pilot.pause()
        text = _plain(app)
        assert " max " in text and " min " in text and " 2.0 " not in text
        assert "━ val_acc 0.95  best↑ 0.95  [0.1..0.95]" in text
        assert any(0x2800 < ord(ch) <= 0x28FF for ch in text)  # braille lines drawn


async def test_one_value_is_a_dot_and_the_chart_takes_neither_focus_nor_keys() -> None:
    app = PanelApp()
    async with app.run_test(size=(48, 14)) as pilot:
        panel = app.query_one(MetricsPanel)
        panel.add("loss", 0.5)
        panel.redraw()
        await pilot.pause()
        assert any(0x2800 < ord(ch) <= 0x28FF for ch in _plain(app))
        assert not app.query_one(Chart).can_focus
        await pilot.press("tab", "r")
        assert app.focused is None and app.reruns == 1


class UnnamedApp(App):
    def compose(self) -> ComposeResult:
        yield MetricsPanel((), id="metrics")


async def test_with_no_metrics_named_the_chart_comes_with_the_first_value() -> None:
    app = UnnamedApp()
    async with app.run_test(size=(48, 14)) as pilot:
        panel = app.query_one(MetricsPanel)
        assert not panel.query(Chart)
        panel.add("loss", 1.0)
        panel.add("loss", 0.5)
        panel.redraw()  # the chart was mounted a moment ago: drawn on a later tick
        for _ in range(20):
            await pilot.pause(MetricsPanel.REDRAW_S)
            if "━ loss 0.5" in _plain(app) and any(0x2800 < ord(ch) <= 0x28FF for ch in _plain(app)):
                break
        text = _plain(app)
        assert "━ loss 0.5" in text and any(0x2800 < ord(ch) <= 0x28FF for ch in text)


def test_the_app_loads_textual_plot_and_numpy_only_when_a_chart_is_made() -> None:
    code = ("import sys\nimport devloop.ui.app\n"
            "loaded = [m for m in ('textual_plot', 'numpy') if m in sys.modules]\nassert not loaded, loaded\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_narrow_legend_drops_what_does_not_fit_rather_than_cutting_a_number() -> None:
    panel = MetricsPanel(("loss",))
    for value in (2.158, 0.0649, 0.1193):
        panel.add("loss", value)
    shown = list(panel.history.series.values())
    assert [panel._legend(shown, width).plain for width in (44, 21, 19, 13)] == [
        "━ loss 0.1193  best↓ 0.0649  [0.0649..2.158]", "━ loss 0.1193 ↓0.0649",
        "loss 0.1193 ↓0.0649", "━ loss 0.1193"]
