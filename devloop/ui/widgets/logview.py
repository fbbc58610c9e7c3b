"""The log: a virtual view over a `Ring` of log lines, rendering only the visible rows.

Appending costs nothing here; `sync()` (called by the app on its ~40 ms flush timer) updates the
virtual size once per batch and follows the tail while the user is at the bottom. Rows are turned
into styled strips (ANSI colours kept) only when shown, and cached by line.

Lines wrap: devloop's own (cell headers, errors, hints, tracebacks) always, the user's output by
default (`wrap`; the app's key switches it off, and then a wide line scrolls sideways, a live
progress line keeping its head and its tail). A wrapped view maps a row to (line, part) through
`RowIndex`: the rows each line takes, appended to as lines arrive and rebuilt only when the width
or the wrap mode changes.

Following: the view sticks to the newest row until the user scrolls up (wheel, keys, scrollbar);
then new output shows a "new output below" note in the border, and End (or scrolling back to the
bottom) follows again. Only a move up by the user stops following: a size change (a horizontal
scrollbar appearing, a resize) never does.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict

from rich.segment import ControlType, Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from devloop.core.textfit import fit_middle
from devloop.ui.logstore import DEVLOOP, LogLine, Ring
from devloop.ui.widgets.graphics import RowGraphic, sixel_row

GUTTER = 5  # "  3 ▏"
PREFIX = GUTTER + 1  # the gutter and a space before the text
STREAM_MARK = {"stdout": "▏", "stderr": "▌", "traceback": "▌", "info": "·", "replay": "┆"}
STREAM_STYLE = {
    "stdout": Style(color="grey50"),
    "stderr": Style(color="red"),
    "traceback": Style(color="red", bold=True),
    "info": Style(color="cyan"),
    "replay": Style(color="grey50", dim=True, italic=True),  # before output replayed after a gap
}
TRACEBACK_TEXT = Style(color="bright_red")
MARKED = Style(bgcolor="grey23")
MATCH = Style(reverse=True, bold=True)
CACHE_SIZE = 512
NEW_BELOW = "▼ new output below · End: follow"
OWN_STREAMS = ("info", "replay", "traceback")  # devloop's words (and errors): wrapped always


def always_wraps(line: LogLine) -> bool:
    """devloop's own lines wrap whatever the mode: a message cut at the edge was unreadable."""
    return line.cell == DEVLOOP or line.stream in OWN_STREAMS


def word_breaks(text: str, width: int) -> list[tuple[int, int]]:
    """Column ranges of `text` wrapped at spaces into rows of at most `width` (a word longer
    than a row is cut). For plain ASCII text: columns are characters."""
    parts, start, n = [], 0, len(text)
    while n - start > width:
        cut = text.rfind(" ", start + 1, start + width + 1)
        end = cut if cut > start else start + width
        parts.append((start, end))
        start = end + 1 if end == cut else end
    parts.append((start, n))
    return parts


class RowIndex:
    """Where each line of a ring starts, in rows, when lines take several rows (wrapped).

    `starts[k]` is the first row of the line appended `first + k`-th to the ring (rows counted
    since the index was built); lines the ring dropped are skipped by an offset, and the list is
    compacted when half of it is dropped lines."""

    def __init__(self) -> None:
        self.first = 0  # the ring's `appended` count the index starts at
        self.starts: list[int] = []
        self.end = 0  # the row after the last line

    def reset(self, first: int) -> None:
        self.first, self.starts, self.end = first, [], 0

    def add(self, rows: int) -> None:
        self.starts.append(self.end)
        self.end += rows

    @property
    def covered(self) -> int:
        """The ring `appended` count up to which lines are indexed."""
        return self.first + len(self.starts)

    def drop_to(self, dropped: int) -> None:
        """The ring dropped its first lines up to `dropped` (an `appended` count)."""
        cut = dropped - self.first
        if cut > 0 and cut * 2 > len(self.starts):
            self.starts = self.starts[cut:]
            self.first = dropped

    def top(self, dropped: int) -> int:
        """The first row of the ring's oldest kept line."""
        k = dropped - self.first
        return self.starts[k] if 0 <= k < len(self.starts) else self.end

    def rows(self, dropped: int) -> int:
        return self.end - self.top(dropped)

    def locate(self, row: int, dropped: int) -> tuple[int, int]:
        """Row `row` of the view -> (index in the ring, part of that line)."""
        k0 = dropped - self.first
        absolute = self.top(dropped) + row
        k = bisect_right(self.starts, absolute, lo=max(k0, 0)) - 1
        return k - k0, absolute - self.starts[k]

    def row_of(self, index: int, dropped: int) -> int:
        k = dropped - self.first + index
        return self.starts[k] - self.top(dropped)


class LogView(ScrollView, can_focus=True):
    """Scrollable, filterable log; long lines wrap (see the module's docstring)."""

    BINDINGS = [
        ("home", "scroll_home", "Top"),
        ("end", "scroll_end", "Bottom"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._source: Ring = Ring(1)
        self._seen_dropped = 0
        # rendered (gutter, text) by line seq; a Kitty figure row's placeholders by (seq, "kitty")
        self._cache: OrderedDict[int | tuple[int, str], tuple[Strip, Strip]] = OrderedDict()
        self.follow = True
        self.new_below = False  # output arrived while the user was scrolled up
        self.wrap = True  # the user's lines wrap (devloop's own always do)
        self.search: str = ""
        self.marked: set[int] = set()  # seqs of lines drawn highlighted (a traceback jumped to)
        self.max_width = 0
        self.tail: list[LogLine] = []  # unfinished lines (a progress bar), drawn after the source
        self._index = RowIndex()
        self._index_width = -1  # the text width the index was built for
        self._pinning = False  # our own scroll: not the user's
        # rows of inline figures drawn with a terminal graphics protocol (graphics.py), by seq
        self.graphics: dict[int, RowGraphic] = {}

    # -- what is shown -------------------------------------------------------------------------

    def show(self, source: Ring | list[LogLine], *, max_width: int, search: str = "") -> None:
        """Point the view at another buffer (a cell's ring, all cells, search results)."""
        if not isinstance(source, Ring):
            ring = Ring(max(1, len(source)))
            for line in source:
                ring.append(line)
            source = ring
        self._source = source
        self._seen_dropped = source.dropped
        self.search = search
        self._cache.clear()
        self._index_width = -1  # rebuilt for the new source
        self.follow, self.new_below = True, False
        self.sync(max_width)

    @property
    def line_count(self) -> int:
        return len(self._source)

    def set_tail(self, lines: list[LogLine]) -> None:
        """Replace the live unfinished lines shown below the stored ones (call `sync` after)."""
        self.tail = lines

    def set_wrap(self, wrap: bool) -> None:
        """Wrap the user's long lines (True) or give each one row, scrolled sideways (False)."""
        if wrap == self.wrap:
            return
        self.wrap = wrap
        self._index_width = -1
        self._cache.clear()
        self.scroll_to(x=0, animate=False, immediate=True)
        self.sync(self.max_width)

    @property
    def text_width(self) -> int:
        """Columns a wrapped line's text gets in each row."""
        return max(8, self.scrollable_content_region.width - PREFIX)

    def _rows_of(self, line: LogLine, width: int) -> int:
        if line.width <= width or not (self.wrap or always_wraps(line)) or line.stream == "image":
            return 1  # a figure's row never wraps (a wrapped one tears the image): it is cut at the edge
        if self._word_wrapped(line):
            return len(word_breaks(line.text, width))
        return -(-line.width // width)

    @staticmethod
    def _word_wrapped(line: LogLine) -> bool:
        """devloop's own plain messages wrap at spaces (the user's output at the edge, as a
        terminal does)."""
        return always_wraps(line) and line.stream != "traceback" and line.text.isascii() \
            and "\x1b" not in line.text

    def _update_index(self) -> None:
        """Index the lines appended since the last sync (all of them after a change of width)."""
        ring, index = self._source, self._index
        width = self.text_width
        if width != self._index_width or ring.appended - index.covered > len(ring) \
                or index.covered > ring.appended:
            self._index_width = width
            index.reset(ring.dropped)
        index.drop_to(ring.dropped)
        for position in range(len(ring) - (ring.appended - index.covered), len(ring)):
            index.add(self._rows_of(ring[position], width))

    @property
    def base_rows(self) -> int:
        return self._index.rows(self._source.dropped)

    def sync(self, max_width: int) -> None:
        """New lines arrived in the source: grow, and follow the tail when following."""
        before = self._index.top(self._seen_dropped) if self._index_width >= 0 else 0
        old_rows = self.virtual_size.height
        self._update_index()
        shifted = 0
        if self._source.dropped != self._seen_dropped:
            shifted = self._index.top(self._source.dropped) - before
            self._seen_dropped = self._source.dropped
        self.max_width = max(max_width, max((line.width for line in self.tail), default=0))
        width = self.text_width
        tail_rows = sum(self._rows_of(line, width) for line in self.tail)
        rows = self.base_rows + tail_rows
        wide = 0 if self.wrap else self.max_width + PREFIX
        self.virtual_size = Size(wide, rows)
        if self.follow:
            self._to_tail()
            self.call_after_refresh(self._to_tail)  # again once a scrollbar came or went
        else:
            if shifted:
                self._pin(y=max(0, self.scroll_y - shifted))
            if rows > old_rows or shifted:
                self._set_new_below(True)
        self.refresh()

    def _set_new_below(self, on: bool) -> None:
        if on != self.new_below:
            self.new_below = on
            self.border_subtitle = NEW_BELOW if on else ""

    def _pin(self, **where: float) -> None:
        self._pinning = True
        try:
            self.scroll_to(**where, animate=False, immediate=True)
        finally:
            self._pinning = False

    def jump_to(self, line: LogLine) -> bool:
        """Scroll so `line` is near the top of the view; False when it is not in this view."""
        index = self.index_of(line)
        if index is None:
            return False
        self.follow = False
        self._update_index()
        self._pin(y=max(0, self._index.row_of(index, self._source.dropped) - 1))
        self.refresh()
        return True

    def index_of(self, line: LogLine) -> int | None:
        lines = self._source.lines
        # The line is usually near the end: search backwards.
        for offset, candidate in enumerate(reversed(lines)):
            if candidate is line:
                return len(lines) - 1 - offset
        return None

    def mark(self, seqs: set[int]) -> None:
        self.marked = seqs
        self._cache.clear()
        self.refresh()

    # -- scrolling decides following -----------------------------------------------------------

    def on_resize(self) -> None:
        """A new width re-wraps the lines; a follower stays at the tail."""
        self.sync(self.max_width)

    def _to_tail(self) -> None:
        if self.follow:
            self._pin(y=self.max_scroll_y)
            self._set_new_below(False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._pinning:
            return
        if new >= self.max_scroll_y:  # the user came back to the bottom: follow again
            self.follow = True
            self._set_new_below(False)
        elif new < old:  # the user scrolled up
            self.follow = False

    def action_scroll_end(self) -> None:
        self.follow = True
        self._to_tail()

    def action_scroll_home(self) -> None:
        self.follow = False
        self._pin(y=0)

    # -- rendering -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.size.width
        style = self.rich_style
        base_rows = self.base_rows
        if row >= base_rows:  # the live unfinished lines: change as they stream, not cached
            row -= base_rows
            text_width = self.text_width
            for line in self.tail:
                rows = self._rows_of(line, text_width)
                if row < rows:
                    if rows == 1 and not self.wrap and line.width > width - PREFIX + scroll_x:
                        # one row, wider than the view: keep its head and its tail (a bar's numbers)
                        line = LogLine(line.seq, line.cell, line.stream,
                                       fit_middle(line.text, max(8, width - PREFIX)), width - PREFIX)
                        scroll_x = 0
                    return self._row(line, self._render_parts(line, style), row, rows, scroll_x, width, style)
                row -= rows
            return Strip.blank(width, style)
        index, part = self._index.locate(row, self._source.dropped)
        line = self._source[index]
        graphic = self.graphics.get(line.seq) if self.graphics else None
        if graphic is not None and part == 0 and self._draws_graphics():
            drawn = self._graphic_row(line, graphic, y, scroll_x, width, style)
            if drawn is not None:
                return drawn
        parts = self._parts(line.seq, line, style)
        rows = self._rows_of(line, self._index_width if self._index_width > 0 else self.text_width)
        return self._row(line, parts, part, rows, scroll_x, width, style)

    GRAPHIC_ROWS_KEPT = 2048  # figure rows drawn with a protocol (~128 figures); older: half blocks

    def add_graphic(self, seq: int, graphic: RowGraphic) -> None:
        """Draw line `seq` with a graphics protocol; the oldest rows beyond the bound go back to
        their half blocks (a long session's Sixel bands would otherwise pile up in memory)."""
        self.graphics[seq] = graphic
        while len(self.graphics) > self.GRAPHIC_ROWS_KEPT:
            self.graphics.pop(next(iter(self.graphics)))

    def _draws_graphics(self) -> bool:
        """Graphics only on the active screen: behind a dialog Textual dims what it draws, and a
        Sixel band or a recoloured placeholder would not be dimmed but garbled."""
        try:
            return self.screen.is_active
        except Exception:  # noqa: BLE001 - not mounted
            return False

    def _graphic_row(self, line: LogLine, graphic: RowGraphic, y: int, scroll_x: int, width: int,
                     style: Style) -> Strip | None:
        """A figure's row drawn by the terminal (None: draw its half blocks instead)."""
        if scroll_x or graphic.cols + PREFIX > width:  # scrolled sideways or too narrow
            return None
        if graphic.kind == "kitty":  # placeholder text: the terminal draws the image under it
            placeholders = LogLine(line.seq, line.cell, line.stream, graphic.data, graphic.cols)
            return self._row(line, self._parts((line.seq, "kitty"), placeholders, style), 0, 1, 0, width, style)
        gutter = self._parts(line.seq, line, style)[0]
        region = self.content_region
        band = sixel_row(graphic.data, region.x + PREFIX, region.y + y, graphic.cols)
        rest = width - PREFIX - graphic.cols
        return Strip([*gutter.crop(0, PREFIX), Segment(band, None, ((ControlType.CURSOR_FORWARD, 0),)),
                      Segment(" " * rest, style)], width)

    def _parts(self, key: int | tuple[int, str], line: LogLine, style: Style) -> tuple[Strip, Strip]:
        """`line` rendered (`_render_parts`), cached under `key` (bounded, oldest out first)."""
        parts = self._cache.get(key)
        if parts is None:
            parts = self._cache[key] = self._render_parts(line, style)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return parts

    def _row(self, line: LogLine, parts: tuple[Strip, Strip], part: int, rows: int, scroll_x: int,
             width: int, style: Style) -> Strip:
        gutter, body = parts
        if rows == 1:  # one row: scrolled sideways with the view (when not wrapping)
            return Strip.join([gutter, body]).crop_extend(scroll_x, scroll_x + width, style)
        text_width = self.text_width  # a wrapped line: part `part` of its text, under a blank gutter
        lead = gutter if part == 0 else Strip.blank(PREFIX, style)
        if self._word_wrapped(line):
            breaks = word_breaks(line.text, text_width)
            start, end = breaks[min(part, len(breaks) - 1)]
            piece = body.crop(start, end)
        else:
            piece = body.crop(part * text_width, (part + 1) * text_width)
        return Strip.join([lead, piece]).crop_extend(0, width, style)

    def _render_parts(self, line: LogLine, base: Style) -> tuple[Strip, Strip]:
        """The line's gutter (cell number, stream mark, a space) and its text, as strips."""
        gutter = Text(
            "    " if line.cell == DEVLOOP else f"{line.cell:>3} ",
            style=Style(color="grey42"),
        )
        gutter.append(STREAM_MARK.get(line.stream, "▏"), STREAM_STYLE.get(line.stream, base))
        gutter.append(" ")
        body = Text.from_ansi(line.text, no_wrap=True) if "\x1b" in line.text else Text(line.text)
        body.no_wrap, body.end = True, ""
        if line.stream == "traceback":
            body.stylize(TRACEBACK_TEXT)
        elif line.stream in ("info", "replay"):
            body.stylize(STREAM_STYLE[line.stream])
        if self.search:
            body.highlight_words([self.search], MATCH, case_sensitive=False)
        gutter.no_wrap, gutter.end = True, ""
        if line.seq in self.marked:
            gutter.stylize(MARKED)
            body.stylize(MARKED)
        console = self.app.console
        gutter_strip = Strip(gutter.render(console), gutter.cell_len).apply_style(base)
        body_strip = Strip(body.render(console), body.cell_len).apply_style(base)
        return gutter_strip, body_strip
