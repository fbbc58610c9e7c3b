"""Figures inline in the log with a terminal graphics protocol (issue 15): Kitty placeholders and
Sixel bands, one per log row.

No terminal that speaks either protocol runs here, so what reaches the terminal is read at the
outermost boundary: the escape sequences the app writes through Textual's driver (recorded by a
stand-in for the driver's `write`) and the strips the log view hands Textual's compositor."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.ui.app import DevloopApp
from devloop.ui.widgets import graphics
from devloop.ui.widgets.logview import PREFIX
from tests.ui.test_snapshots_display import FIGURE, SIZE, config, fixed_png, plot_cell

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def not_in_tmux(monkeypatch) -> None:
    """Kitty commands are wrapped for tmux inside tmux; these tests read them unwrapped."""
    monkeypatch.delenv("TMUX", raising=False)


APC = re.compile(r"\x1b_G([^;\x1b]*)(?:;([^\x1b]*))?\x1b\\")


def test_kitty_placeholders_name_the_image_row_and_column() -> None:
    from textual_image.renderable.tgp import _NUMBER_TO_DIACRITIC as marks

    image_id = (7 << 24) | 0x1234C8
    rows = graphics.kitty_rows(image_id, cols=3, rows=2)
    assert len(rows) == 2
    assert rows[1].startswith("\x1b[38;2;18;52;200m") and rows[1].endswith("\x1b[39m")
    body = rows[1][len("\x1b[38;2;18;52;200m"):-len("\x1b[39m")]
    cells = [body[i:i + 4] for i in range(0, len(body), 4)]
    assert cells == ["\U0010eeee" + chr(marks[1]) + chr(marks[c]) + chr(marks[7]) for c in range(3)]
    # on a 256-colour terminal the colour is a palette index (a 24-bit one would be rounded)
    assert graphics.kitty_rows(image_id, 3, 2, truecolor=False)[0].startswith("\x1b[38;5;200m")
    ids = {graphics.new_kitty_id(truecolor=False) for _ in range(500)}
    assert all(16 <= i & 255 <= 246 and i >> 24 for i in ids)  # never a 16-colour index, never 0
    assert not {i & 255 for i in ids} & {59, 102, 145, 188}  # grays that come back as their twin
    assert all(i & 0xFFFFFF and i >> 24 for i in {graphics.new_kitty_id() for _ in range(500)})


def test_kitty_transmit_sends_the_png_in_chunks_then_a_virtual_placement(tmp_path: Path) -> None:
    png = bytes(range(256)) * 40  # 10 KiB: three chunks of base64
    messages = APC.findall(graphics.kitty_transmit(png, 77, cols=30, rows=8))
    keys = [dict(field.split("=") for field in head.split(",")) for head, _ in messages]
    assert keys[0] == {"a": "t", "f": "100", "i": "77", "q": "2", "m": "1"}
    assert [k.get("m") for k in keys[:-1]] == ["1"] * (len(keys) - 2) + ["0"]
    assert base64.standard_b64decode("".join(payload for _, payload in messages[:-1])) == png
    assert keys[-1] == {"a": "p", "U": "1", "i": "77", "c": "30", "r": "8", "q": "2"}
    assert all(len(payload) <= graphics.KITTY_CHUNK for _, payload in messages)


def test_inside_tmux_kitty_commands_are_wrapped_for_passthrough(monkeypatch) -> None:
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,1,0")
    wrapped = graphics.kitty_delete(5)
    assert wrapped == "\x1bPtmux;\x1b\x1b_Ga=d,d=I,i=5,q=2\x1b\x1b\\\x1b\\"
    monkeypatch.delenv("TMUX")
    assert graphics.kitty_delete(5) == "\x1b_Ga=d,d=I,i=5,q=2\x1b\\"


def test_sixel_bands_are_one_image_per_cell_row(tmp_path: Path) -> None:
    fixed_png(tmp_path / "f.png")
    bands = graphics.sixel_bands(tmp_path / "f.png", cols=16, rows=6, cell=(10, 20))
    assert len(bands) == 6
    for band in bands:
        assert band.startswith("\x1bP") and band.endswith("\x1b\\")
        assert '"1;1;160;20' in band  # raster: the row's width and one cell's height
    assert graphics.sixel_bands(tmp_path / "missing.png", 16, 6, (10, 20)) == []


def test_geometry_fits_and_never_enlarges() -> None:
    assert graphics.geometry(160, 120, 72, 16, (10, 20)) == (16, 6)  # smaller than the box: as is
    cols, rows = graphics.geometry(1000, 1000, 72, 16, (10, 20))
    assert rows == 16 and cols == 32  # square: twice as many columns as rows (cells are 1:2)
    assert graphics.geometry(4000, 100, 72, 16, (10, 20))[0] == 72


class RecordingDriverApp(DevloopApp):
    """The app with the terminal replaced by a recorder of what would be written to it."""

    written: list[str]

    def _terminal_write(self, data: str) -> None:
        self.__dict__.setdefault("written", []).append(data)


def image_cols(app: DevloopApp) -> int:
    return next(iter(app.log_view.graphics.values())).cols


def image_rows(app: DevloopApp) -> list:
    return [line for line in app.store.all.lines if line.stream == "image"]


def recording_app(tmp_path: Path, images: str) -> RecordingDriverApp:
    """The app with a fixed figure on disk and `[ui] images = images`."""
    fixed_png(tmp_path / FIGURE)
    cfg = config(tmp_path)
    cfg.ui.images = images
    return RecordingDriverApp(config=cfg, profile="docker-gpu", file="train.py")


async def show(app: DevloopApp, pilot, events: list) -> None:  # noqa: ANN001 - a Pilot
    """Feed the events and wait until their figures are drawn into the log."""
    app.feed(events)
    await pilot.pause()
    await asyncio.gather(*app.figure_jobs)
    app.flush_log()
    await pilot.pause()


async def test_kitty_figure_is_sent_once_and_its_rows_are_placeholders(tmp_path: Path) -> None:
    app = recording_app(tmp_path, "kitty")
    async with app.run_test(size=SIZE) as pilot:
        await show(app, pilot, plot_cell())
        rows = image_rows(app)
        cols, expected_rows = graphics.geometry(160, 120, 72, 16,
                                                graphics.cell_pixels())
        assert len(rows) == expected_rows
        sent = "".join(app.written)
        png = (tmp_path / FIGURE).read_bytes()
        messages = APC.findall(sent)
        assert base64.standard_b64decode("".join(p for _, p in messages[:-1])) == png
        assert f"c={cols},r={expected_rows}" in messages[-1][0]
        # every figure row the view draws is that image's placeholders, in order
        view = app.log_view
        first = next(y for y in range(view.size.height)
                     if "\U0010eeee" in "".join(seg.text for seg in view.render_line(y)))
        for r in range(expected_rows):
            text = "".join(seg.text for seg in view.render_line(first + r))
            assert text.count("\U0010eeee") == cols
        assert rows[0].text.count("▀") > 0  # the line's own text stays half blocks (search, dialogs)
        app.exit()
        await pilot.pause()
        image_id = next(iter(app.log_view.graphics.values())).image_id
        assert graphics.kitty_delete(image_id) in "".join(app.written)  # the terminal is left clean


async def test_sixel_rows_each_draw_their_band_where_the_row_is(tmp_path: Path) -> None:
    app = recording_app(tmp_path, "sixel")
    async with app.run_test(size=SIZE) as pilot:
        await show(app, pilot, plot_cell())
        view = app.log_view
        region = view.content_region
        drawn = {y: "".join(seg.text for seg in view.render_line(y)) for y in range(view.size.height)}
        sixel_rows = [y for y, text in drawn.items() if "\x1bP" in text]
        assert len(sixel_rows) == len(image_rows(app)) and sixel_rows == list(range(sixel_rows[0],
                                                                                   sixel_rows[-1] + 1))
        for y in sixel_rows:
            assert drawn[y].count("\x1bP") == 1
            assert f"\x1b[{region.y + y + 1};{region.x + PREFIX + 1}H\x1bP" in drawn[y]
            strip = view.render_line(y)
            cols = image_cols(app)
            assert strip.cell_length == view.size.width  # the band takes `cols` cells of the row
            assert sum(seg.cell_length for seg in strip) + cols == view.size.width
        # behind a dialog the rows are half blocks: Textual dims the screen, a band would not be
        from devloop.ui.widgets.image import ImageScreen

        app.push_screen(ImageScreen(tmp_path / FIGURE, "halfblock"))
        await pilot.pause()
        assert "\x1bP" not in "".join(seg.text for seg in view.render_line(sixel_rows[0]))
        assert "▀" in "".join(seg.text for seg in view.render_line(sixel_rows[0]))


async def test_the_terminal_keeps_a_bounded_number_of_kitty_images(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graphics, "KITTY_KEPT", 2)
    app = recording_app(tmp_path, "kitty")
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(3):
            app.feed(plot_cell())
            await pilot.pause()
            await asyncio.gather(*app.figure_jobs)
        ids = [int(m) for m in re.findall(r"a=t,f=100,i=(\d+)", "".join(app.written))]
        assert len(ids) == 3
        assert graphics.kitty_delete(ids[0]) in "".join(app.written)
        assert {g.image_id for g in app.log_view.graphics.values()} == set(ids[1:])


async def test_a_figure_is_cut_at_the_edge_not_wrapped_when_the_log_narrows(tmp_path: Path) -> None:
    app = recording_app(tmp_path, "halfblock")
    PIL.new("RGB", (640, 160), "navy").save(tmp_path / FIGURE)  # wider than the fixed one
    events = [dataclasses.replace(e, width=640, height=160) if isinstance(e, ev.Display) and e.path else e
              for e in plot_cell()]
    async with app.run_test(size=(200, 40)) as pilot:
        await show(app, pilot, events)
        figure_rows = len(image_rows(app))
        wide = app.log_view.virtual_size.height
        await pilot.resize_terminal(120, 40)  # the figure (wider than the log now) keeps its rows
        await pilot.pause()
        app.flush_log()
        await pilot.pause()
        assert max(line.width for line in image_rows(app)) > app.log_view.text_width
        tall = app.log_view.virtual_size.height
        assert tall - wide < figure_rows  # other lines may wrap; the figure's rows do not
        view = app.log_view
        rows = [y for y in range(view.size.height) if "▀" in "".join(s.text for s in view.render_line(y))]
        assert len(rows) == figure_rows and rows == list(range(rows[0], rows[0] + figure_rows))


async def test_the_log_keeps_a_bounded_number_of_protocol_rows(tmp_path: Path, monkeypatch) -> None:
    from devloop.ui.widgets.logview import LogView

    monkeypatch.setattr(LogView, "GRAPHIC_ROWS_KEPT", 10)
    app = recording_app(tmp_path, "sixel")
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(3):
            await show(app, pilot, plot_cell())
        rows = image_rows(app)
        assert len(app.log_view.graphics) == 10
        assert set(app.log_view.graphics) == {line.seq for line in rows[-10:]}  # the newest kept
