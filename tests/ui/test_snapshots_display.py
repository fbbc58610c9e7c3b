"""Snapshots of what cells show (issue 15): a figure inline in the log (half-block rows, so the
SVG is the same on every terminal) and the live metric panel. Fixed events and a fixed PNG."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from devloop.core import events as ev
from devloop.ui.app import DevloopApp
from tests.ui import fake_events

PIL = pytest.importorskip("PIL.Image")
SIZE = (120, 40)
FIGURE = ".devloop/outputs/20261130-093000-1-1/cell4-1.png"


def fixed_png(path: Path) -> None:
    """A 160x120 'figure': white, a blue rising curve, a red falling one, a black frame."""
    img = PIL.new("RGB", (160, 120), "white")
    px = img.load()
    for x in range(160):
        for dy in (0, 1, 2):
            px[x, min(119, 100 - int(80 * x / 159) + dy)] = (31, 119, 180)
            px[x, min(119, 20 + int(80 * (1 - math.exp(-x / 40))) + dy)] = (214, 39, 40)
        px[x, 0] = px[x, 119] = (0, 0, 0)
    for y in range(120):
        px[0, y] = px[159, y] = (0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def config(root: Path, metrics: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(
        root=root,
        project=SimpleNamespace(name="mnist-demo"),
        ui=SimpleNamespace(scrollback=10_000, images="halfblock", metrics=metrics),
        profile_names=lambda: ["local", "docker-gpu"],
    )


def feeding(events):
    async def run_before(pilot) -> None:
        pilot.app.feed(events)
        await pilot.pause()
        await asyncio.gather(*pilot.app.figure_jobs)  # the figure's rows are drawn on a thread
        await pilot.pause()
        for panel in pilot.app.query("MetricsPanel"):
            panel.redraw()
        pilot.app.flush_log()
        await pilot.pause()

    return run_before


def plot_cell() -> list[ev.Event]:
    return fake_events.start() + [
        ev.CellsPlanned((4,), "changed"),
        ev.CellState(4, "running"), ev.CellStart(4, 52, "plot"),
        ev.Output(4, "stdout", "plotting 2 curves\n"),
        ev.Display(cell=4, mime="image/png", k=1, width=160, height=120, bytes=1234, path=FIGURE),
        ev.Output(4, "stdout", "text after the figure keeps streaming\n"),
        ev.Display(cell=4, mime="text/plain", text="{'best_params': {'C': 10}}"),
        ev.CellDone(4, True, 312.0), ev.CellState(4, "ok"),
    ]


def test_log_with_an_inline_figure(snap_compare, tmp_path: Path) -> None:
    fixed_png(tmp_path / FIGURE)
    app = DevloopApp(config=config(tmp_path), profile="docker-gpu", file="train.py")
    assert snap_compare(app, terminal_size=SIZE, run_before=feeding(plot_cell()))


def training_with_metrics() -> list[ev.Event]:
    events = fake_events.start() + [ev.CellsPlanned((3,), "changed"), ev.CellState(3, "running"),
                                    ev.CellStart(3, 30, "train")]
    for step in range(1, 41):
        loss = 2.3 * math.exp(-step / 12) + 0.05 * math.sin(step)
        acc = 1 - 0.9 * math.exp(-step / 10)
        events.append(ev.Output(3, "stdout", f"step {step} loss={loss:.4f} val_acc={acc:.3f}\n"))
        events.append(ev.Metric(metric="loss", value=round(loss, 4), step=step, cell=3))
        events.append(ev.Metric(metric="val_acc", value=round(acc, 3), step=step, cell=3))
    return events


def test_metric_panel(snap_compare, tmp_path: Path) -> None:
    app = DevloopApp(config=config(tmp_path, ("loss", "val_acc")), profile="docker-gpu", file="train.py")
    assert snap_compare(app, terminal_size=SIZE, run_before=feeding(training_with_metrics()))


def test_metric_panel_narrow(snap_compare, tmp_path: Path) -> None:
    """80x24: the panel sits beside the cells and GPU panels, fewer ticks, a shorter legend."""
    app = DevloopApp(config=config(tmp_path, ("loss", "val_acc")), profile="docker-gpu", file="train.py")
    assert snap_compare(app, terminal_size=(80, 24), run_before=feeding(training_with_metrics()))


async def test_enter_on_the_log_opens_the_figure_in_the_app_without_a_desktop(tmp_path: Path,
                                                                               monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    fixed_png(tmp_path / FIGURE)
    app = DevloopApp(config=config(tmp_path), profile="docker-gpu", file="train.py")
    async with app.run_test(size=SIZE) as pilot:
        app.feed(plot_cell())
        await pilot.pause()
        await asyncio.gather(*app.figure_jobs)
        app.log_view.focus()
        await pilot.press("enter")
        await pilot.pause()
        from devloop.ui.widgets.image import ImageScreen

        assert isinstance(app.screen, ImageScreen) and app.screen.path == tmp_path / FIGURE
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ImageScreen)


async def test_a_pull_is_one_status_line_and_metrics_reach_the_panel(tmp_path: Path) -> None:
    app = DevloopApp(config=config(tmp_path, ("loss",)), profile="docker-gpu", file="train.py")
    async with app.run_test(size=SIZE) as pilot:
        app.feed(fake_events.start() + [
            ev.Metric(metric="loss", value=0.5, step=1), ev.Metric(metric="loss", value=0.25, step=2),
            ev.PullDone(files=("results/a.csv", "results/b.csv", "figures/c.png"), bytes=1_258_291, ms=80.0),
        ])
        await pilot.pause()
        assert app.sync_line.status.plain == "pulled 3 files, 1.2 MiB"
        panel = app.query_one("MetricsPanel")
        assert panel.history.series["loss"].values == [0.5, 0.25] and panel.display
        app.feed([ev.PullDone(files=(), bytes=10, conflicts=({"path": "r.csv", "remote": "r.remote.csv"},))])
        await pilot.pause()
        assert "1 conflict (kept both)" in app.sync_line.status.plain
        assert any("r.remote.csv" in line.text for line in app.store.all.lines)


async def test_the_full_view_uses_textual_image_unless_half_blocks_are_forced(tmp_path: Path,
                                                                               monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    fixed_png(tmp_path / FIGURE)
    cfg = config(tmp_path)
    cfg.ui.images = "auto"
    app = DevloopApp(config=cfg, profile="docker-gpu", file="train.py")
    async with app.run_test(size=SIZE) as pilot:
        app.open_figure(tmp_path / FIGURE)
        await pilot.pause()
        widget = app.screen.query_one(".image")
        assert type(widget).__module__.startswith("textual_image.")


async def test_a_cell_that_reruns_starts_its_metrics_again_and_keeps_the_others(tmp_path: Path) -> None:
    app = DevloopApp(config=config(tmp_path, ("loss", "acc")), profile="docker-gpu", file="train.py")
    async with app.run_test(size=SIZE) as pilot:
        app.feed(fake_events.start() + [
            ev.CellStart(2, 10, "train"), ev.Metric(metric="loss", value=0.9, step=1, cell=2),
            ev.Metric(metric="loss", value=0.5, step=2, cell=2),
            ev.CellStart(3, 20, "eval"), ev.Metric(metric="acc", value=0.8, step=1, cell=3),
        ])
        await pilot.pause()
        series = app.query_one("MetricsPanel").history.series
        assert series["loss"].values == [0.9, 0.5] and series["acc"].values == [0.8]
        app.feed([ev.CellStart(2, 10, "train"), ev.Metric(metric="loss", value=0.7, step=3, cell=2)])
        await pilot.pause()
        assert series["loss"].values == [0.7] and series["acc"].values == [0.8]
