"""Figures in the TUI: inline in the log, full size on Enter or a click.

Inline, an image is a few log rows of half blocks (`▀`, the upper pixel as the foreground colour,
the lower one as the background): plain coloured text, so it scrolls, filters and is bounded with
the rest of the log and works in any terminal. Full size it opens in the system viewer
(xdg-open / open); where there is none (a remote shell), in a screen that draws it with
textual-image, which picks the Kitty graphics protocol, Sixel or half cells by what the terminal
answers (`[ui] images` forces one: kitty | sixel | halfblock; off: a line naming the file only).

textual-image asks the terminal what it supports when it is imported, which is impossible once
Textual runs: `prepare()` imports it before the app starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from devloop.core.textfit import cell_width
from devloop.ui.widgets import graphics

MODES = ("auto", "kitty", "sixel", "halfblock", "off")
INLINE_MAX_ROWS = 16  # an inline figure takes at most this many log rows (32 pixel rows)
INLINE_MAX_COLS = 72

_VIEWER_WIDGETS: dict[str, type] = {}


def prepare(mode: str) -> None:
    """Import textual-image's widgets for `mode` now (they query the terminal on import, up to
    ~0.3 s where it does not answer). `halfblock` and `off` need none: the full view is then
    drawn with this module's own half blocks."""
    if mode in ("off", "halfblock") or _VIEWER_WIDGETS:
        return
    try:
        from textual_image import widget as tiw
    except Exception:  # noqa: BLE001 - not installed, or a terminal that answers garbage
        return
    _VIEWER_WIDGETS.update({"auto": tiw.Image, "kitty": tiw.TGPImage, "sixel": tiw.SixelImage,
                            "halfblock": tiw.HalfcellImage})


def fit(width: int, height: int, max_cols: int = INLINE_MAX_COLS,
        max_rows: int = INLINE_MAX_ROWS) -> tuple[int, int]:
    """(columns, pixel rows, even) an image of width x height takes inline: never enlarged."""
    scale = min(max_cols / width, (max_rows * 2) / height, 1.0)
    cols = max(1, round(width * scale))
    pixel_rows = max(2, round(height * scale))
    return cols, pixel_rows + pixel_rows % 2


def halfblock_rows(path: str | Path, max_cols: int = INLINE_MAX_COLS,
                   max_rows: int = INLINE_MAX_ROWS) -> list[str]:
    """The image as rows of `▀` with 24-bit ANSI colours, fitted into max_cols x max_rows cells
    (a cell is one pixel wide and two tall). Empty when the file is not an image Pillow reads."""
    try:
        from PIL import Image
    except ImportError:
        return []
    try:
        with Image.open(path) as img:
            if img.size[0] <= 0 or img.size[1] <= 0:
                return []
            cols, pixel_rows = fit(img.size[0], img.size[1], max_cols, max_rows)
            if img.mode not in ("RGB", "RGBA"):
                img = img.convert("RGBA")
            # shrink first (reducing_gap: a fast integer reduce, then a box filter): a 1000x1000
            # figure costs its PNG decode and little more
            small = img.resize((cols, pixel_rows), Image.Resampling.BOX, reducing_gap=2.0)
    except Exception:  # noqa: BLE001 - an SVG, a damaged file
        return []
    if small.mode == "RGBA":  # transparency on white, as figures are usually shown
        small = Image.alpha_composite(Image.new("RGBA", small.size, (255, 255, 255, 255)), small)
    pixels = small.convert("RGB").load()
    rows = []
    for y in range(0, pixel_rows, 2):
        parts = []
        last = None
        for x in range(cols):
            top, bottom = pixels[x, y], pixels[x, y + 1]
            if (top, bottom) != last:
                parts.append("\x1b[38;2;%d;%d;%d;48;2;%d;%d;%dm" % (top + bottom))
                last = (top, bottom)
            parts.append("▀")
        parts.append("\x1b[0m")
        rows.append("".join(parts))
    return rows


def system_viewer() -> list[str] | None:
    """The command that opens a file in the desktop's viewer, or None (no desktop here)."""
    if sys.platform == "darwin":
        return ["open"]
    if os.name == "nt":
        return ["cmd", "/c", "start", ""]
    if (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and shutil.which("xdg-open"):
        return ["xdg-open"]
    return None


def open_in_viewer(path: str | Path) -> bool:
    """Open `path` in the system viewer, detached; False when there is none."""
    command = system_viewer()
    if command is None:
        return False
    try:
        subprocess.Popen(command + [str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return False
    return True


class ImageScreen(ModalScreen[None]):
    """A figure full size, drawn by textual-image; Escape closes, o opens the system viewer."""

    DEFAULT_CSS = """
    ImageScreen { align: center middle; }
    ImageScreen > Vertical { width: 95%; height: 95%; border: round $accent; background: $surface; }
    ImageScreen .image { width: 100%; height: 1fr; }
    """
    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False),
                Binding("enter", "close", "Close", show=False),
                Binding("o", "open_viewer", "Open in the system viewer")]

    def __init__(self, path: Path, mode: str = "auto") -> None:
        super().__init__()
        self.path = Path(path)
        self.mode = mode

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"{self.path.name} · esc: close · o: system viewer"
            widget = _VIEWER_WIDGETS.get(self.mode)
            if widget is not None:
                yield widget(str(self.path), classes="image")
            else:
                rows = halfblock_rows(self.path, 160, 60)
                yield Static(Text.from_ansi("\n".join(rows)) if rows else str(self.path), classes="image")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_open_viewer(self) -> None:
        if not open_in_viewer(self.path):
            self.notify("no system viewer here (no desktop session)", severity="warning")


@dataclass
class InlineFigure:
    """What a figure's reserved log rows become: their text (half blocks, always: search, a
    screen behind a dialog) and, per row, what a graphics protocol draws instead."""

    texts: list[str]
    graphics: list[graphics.RowGraphic | None]
    transmit: str = ""  # Kitty: the image and its placement, sent once before the rows show
    image_id: int = 0


def inline_rows(path: Path, protocol: str, cols: int, rows: int,
                cell: tuple[int, int] = graphics.DEFAULT_CELL, truecolor: bool = True) -> InlineFigure:
    """A figure as `rows` log rows for `protocol` (kitty | halfblock), on a thread;
    `truecolor`: the terminal gets 24-bit colours (Kitty ids are encoded to survive the depth).
    Sixel rows are half blocks here, sharpened by `sixel_rows` (their encoding takes longer)."""
    texts = halfblock_rows(path, cols, rows)
    texts = (texts + [" "] * rows)[:rows]
    if protocol == "kitty":
        png = graphics.kitty_png(path, (cols * cell[0], rows * cell[1]))
        if png is not None:
            image_id = graphics.new_kitty_id(truecolor)
            placeholders = graphics.kitty_rows(image_id, cols, rows, truecolor)
            return InlineFigure(texts, [graphics.RowGraphic("kitty", row, cols, image_id) for row in placeholders],
                                graphics.kitty_transmit(png, image_id, cols, rows), image_id)
    return InlineFigure(texts, [None] * rows)


def sixel_rows(path: Path, cols: int, rows: int, cell: tuple[int, int]) -> list[graphics.RowGraphic]:
    """The Sixel band of each of a figure's rows (empty when it is not an image), on a thread."""
    bands = graphics.sixel_bands(path, cols, rows, cell)
    return [graphics.RowGraphic("sixel", band, cols) for band in bands] if len(bands) == rows else []


class FigureLog:
    """DevloopApp's part for what cells show: Display events into the log (values as text,
    images as a header line and half-block rows), Enter (log focused) or a click on a figure
    opens it. Uses the app's store, log view and `images_mode`."""

    _FIGURES_KEPT = 20_000  # log line seq -> figure path entries (a long session's figures)

    def _on_Display(self, event) -> None:  # noqa: ANN001 - ev.Display
        if not event.path:
            if event.text:
                self._log_line(event.text, cell=event.cell, stream="stdout")
            return
        root = Path(getattr(self.config, "root", None) or ".")
        path = root / event.path
        size = f" {event.width}×{event.height}" if event.width and event.height else ""
        lines = list(self._log_line(f"▣ figure{size} · {event.path} · enter/click: open",
                                    cell=event.cell, stream="figure"))
        if self.images_mode != "off":
            try:
                cols = min(INLINE_MAX_COLS, max(8, self.log_view.text_width - 1))
            except Exception:  # noqa: BLE001 - not mounted yet
                cols = INLINE_MAX_COLS
            if event.width > 0 and event.height > 0:
                # the rows are kept now, blank, and drawn on a thread: decoding a big PNG never
                # holds up the log (text after the figure keeps streaming)
                protocol = graphics.resolve(self.images_mode)
                if protocol in ("kitty", "sixel"):
                    cell = graphics.cell_pixels()
                    cols, rows = graphics.geometry(event.width, event.height, cols, INLINE_MAX_ROWS, cell)
                else:
                    cell, rows = graphics.DEFAULT_CELL, fit(event.width, event.height, cols)[1] // 2
                blank = [line for _ in range(rows) for line in self.store.add_lines(event.cell, "image", " ")]
                lines.extend(blank)
                loop = asyncio.get_running_loop()
                job = loop.run_in_executor(None, inline_rows, path, protocol, cols, rows, cell,
                                           self.console.color_system == "truecolor")
                job.add_done_callback(lambda done, blank=blank: self._fill_figure(blank, done))
                self.figure_jobs.add(job)
                if protocol == "sixel":  # half blocks show first; the bands replace them when encoded
                    sharpen = loop.run_in_executor(None, sixel_rows, path, cols, rows, cell)
                    sharpen.add_done_callback(lambda done, blank=blank: self._sharpen_figure(blank, done))
                    self.figure_jobs.add(sharpen)
            else:
                lines.extend(line for row in halfblock_rows(path, cols)
                             for line in self.store.add_lines(event.cell, "image", row))
            self._note_new_lines(event.cell, len(lines) - 1)
        figures = self._figures
        for line in lines:
            figures[line.seq] = path
        if len(figures) > self._FIGURES_KEPT:
            for seq in list(figures)[: len(figures) - self._FIGURES_KEPT]:
                del figures[seq]

    @property
    def figure_jobs(self) -> set:
        """Figures being drawn into their log rows (tests wait for them)."""
        jobs = self.__dict__.setdefault("_figure_jobs", set())
        return jobs

    def _fill_figure(self, blank: list, done) -> None:  # noqa: ANN001 - a concurrent Future
        self.figure_jobs.discard(done)
        try:
            drawn = done.result()
        except Exception:  # noqa: BLE001 - unreadable: the rows stay blank
            return
        view = self.log_view
        if drawn.transmit:  # Kitty: the image goes to the terminal before its rows are drawn
            self._terminal_write(drawn.transmit)
            self._keep_kitty_image(drawn.image_id, [line.seq for line in blank])
        for line, text, graphic in zip(blank, drawn.texts, drawn.graphics):
            line.text, line.width = text, cell_width(text)
            self.store.max_width = max(self.store.max_width, line.width)
            if graphic is not None:
                view.add_graphic(line.seq, graphic)
        for line in blank:
            view._cache.pop(line.seq, None)
        view.refresh()

    def _sharpen_figure(self, blank: list, done) -> None:  # noqa: ANN001 - a concurrent Future
        self.figure_jobs.discard(done)
        try:
            bands = done.result()
        except Exception:  # noqa: BLE001 - the half blocks stay
            return
        view = self.log_view
        for line, graphic in zip(blank, bands):
            view.add_graphic(line.seq, graphic)
        view.refresh()

    def _terminal_write(self, data: str) -> None:
        """Escape sequences for the terminal itself, in order with Textual's own output (through
        its driver's writer), never straight to stdout from another thread."""
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.write(data)

    def _keep_kitty_image(self, image_id: int, seqs: list[int]) -> None:
        """The terminal holds at most graphics.KITTY_KEPT of our images: the oldest is deleted
        and its rows go back to half blocks."""
        kept = self.__dict__.setdefault("_kitty_images", {})
        kept[image_id] = seqs
        while len(kept) > graphics.KITTY_KEPT:
            oldest = next(iter(kept))
            for seq in kept.pop(oldest):
                self.log_view.graphics.pop(seq, None)
            self._terminal_write(graphics.kitty_delete(oldest))

    def _clear_figures(self) -> None:
        """The log was cleared (another profile): its figures go, from the terminal too."""
        self._figures.clear()
        self.log_view.graphics.clear()
        self.release_kitty_images()

    def release_kitty_images(self) -> None:
        """Delete our images from the terminal (the app is ending): a terminal keeps them."""
        for image_id in self.__dict__.pop("_kitty_images", {}):
            self._terminal_write(graphics.kitty_delete(image_id))

    def exit(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - App.exit's own
        self.release_kitty_images()
        super().exit(*args, **kwargs)

    def _figure_at(self, row: int) -> Path | None:
        """The figure drawn on the log view's row `row` (counted from its top), if any."""
        view = self.log_view
        try:
            absolute = int(view.scroll_offset.y) + row
            if absolute >= view.base_rows:
                return None
            index, _part = view._index.locate(absolute, view._source.dropped)
            return self._figures.get(view._source[index].seq)
        except Exception:  # noqa: BLE001 - a row outside the lines
            return None

    def action_open_figure(self) -> None:
        """Enter in the log: the last figure on screen (else the newest one) opens."""
        path = None
        for row in range(self.log_view.size.height - 1, -1, -1):
            path = self._figure_at(row)
            if path is not None:
                break
        if path is None and self._figures:
            path = next(reversed(self._figures.values()))
        if path is not None:
            self.open_figure(path)

    def open_figure(self, path: Path) -> None:
        if open_in_viewer(path):
            self.notify(f"opened {path.name} in the system viewer")
        else:
            self.push_screen(ImageScreen(path, self.images_mode))

    def on_click(self, event) -> None:  # noqa: ANN001 - textual.events.Click
        offset = event.get_content_offset(self.log_view) if event.widget is self.log_view else None
        if offset is None:
            return
        path = self._figure_at(offset.y)
        if path is not None:
            self.open_figure(path)

    def _on_Metric(self, event) -> None:  # noqa: ANN001 - ev.Metric
        from devloop.ui.widgets.metrics import MetricsPanel

        for panel in self.query(MetricsPanel):
            panel.add(event.metric, event.value, event.cell)

    def _metrics_cell_started(self, cell: int) -> None:
        from devloop.ui.widgets.metrics import MetricsPanel

        for panel in self.query(MetricsPanel):
            panel.cell_started(cell)

    def _on_PullDone(self, event) -> None:  # noqa: ANN001 - ev.PullDone
        from devloop.core.units import human_bytes, plural

        text = f"pulled {plural(len(event.files), 'file')}, {human_bytes(event.bytes)}"
        if event.conflicts:
            text += f" · {plural(len(event.conflicts), 'conflict')} (kept both)"
        self.sync_line.set_status(Text(text, style="green" if not event.conflicts else "yellow"))
        for conflict in event.conflicts:
            self._log_line(f"pull: {conflict['path']} changed here since the last pull: kept; the "
                           f"target's copy is {conflict['remote']}")
