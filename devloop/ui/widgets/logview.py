"""The log: a virtual view over a `Ring` of log lines, rendering only the visible rows.

Appending costs nothing here; `sync()` (called by the app on its ~40 ms flush timer) updates the
virtual size once per batch and follows the tail while the user is at the bottom. Rows are turned
into styled strips (ANSI colours kept) only when shown, and cached by line.
"""

from __future__ import annotations

from collections import OrderedDict

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from devloop.ui.logstore import DEVLOOP, LogLine, Ring

GUTTER = 5  # "  3 ▏"
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


class LogView(ScrollView, can_focus=True):
    """Scrollable, filterable log (no wrapping; scroll sideways for long lines)."""

    BINDINGS = [
        ("home", "scroll_home", "Top"),
        ("end", "scroll_end", "Bottom"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._source: Ring | list[LogLine] = []
        self._seen_dropped = 0
        self._cache: OrderedDict[int, Strip] = OrderedDict()
        self.follow = True
        self.search: str = ""
        self.marked: set[int] = set()  # seqs of lines drawn highlighted (a traceback jumped to)
        self.max_width = 0
        self.tail: list[LogLine] = []  # unfinished lines (a progress bar), drawn after the source

    # -- what is shown -------------------------------------------------------------------------

    def show(self, source: Ring | list[LogLine], *, max_width: int, search: str = "") -> None:
        """Point the view at another buffer (a cell's ring, all cells, search results)."""
        self._source = source
        self._seen_dropped = source.dropped if isinstance(source, Ring) else 0
        self.search = search
        self._cache.clear()
        self.follow = True
        self.sync(max_width)

    @property
    def line_count(self) -> int:
        return len(self._source)

    def set_tail(self, lines: list[LogLine]) -> None:
        """Replace the live unfinished lines shown below the stored ones (call `sync` after)."""
        self.tail = lines

    def sync(self, max_width: int) -> None:
        """New lines arrived in the source: grow, and follow the tail when at the bottom."""
        at_bottom = self.follow or self.scroll_y >= self.max_scroll_y
        shifted = 0
        if isinstance(self._source, Ring):
            dropped = self._source.dropped
            shifted, self._seen_dropped = dropped - self._seen_dropped, dropped
        self.max_width = max(max_width, max((line.width for line in self.tail), default=0))
        self.virtual_size = Size(self.max_width + GUTTER + 1, len(self._source) + len(self.tail))
        if at_bottom:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        elif shifted:
            self.scroll_to(y=max(0, self.scroll_y - shifted), animate=False, immediate=True)
        self.refresh()

    def jump_to(self, line: LogLine) -> bool:
        """Scroll so `line` is near the top of the view; False when it is not in this view."""
        index = self.index_of(line)
        if index is None:
            return False
        self.follow = False
        self.scroll_to(y=max(0, index - 1), animate=False, immediate=True)
        self.refresh()
        return True

    def index_of(self, line: LogLine) -> int | None:
        lines = self._source.lines if isinstance(self._source, Ring) else self._source
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
        """Lines fed before the first layout: follow the tail once the size is known."""
        if self.follow:
            self.call_after_refresh(self._to_tail)

    def _to_tail(self) -> None:
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.follow = new >= self.max_scroll_y

    def action_scroll_end(self) -> None:
        self.follow = True
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def action_scroll_home(self) -> None:
        self.follow = False
        self.scroll_to(y=0, animate=False, immediate=True)

    # -- rendering -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self._source):
            tail_index = index - len(self._source)
            if tail_index >= len(self.tail):
                return Strip.blank(width, style)
            strip = self._render_log_line(self.tail[tail_index], style)  # changes as it streams: no cache
            return strip.crop_extend(scroll_x, scroll_x + width, style)
        line = self._source[index]
        strip = self._cache.get(line.seq)
        if strip is None:
            strip = self._render_log_line(line, style)
            self._cache[line.seq] = strip
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def _render_log_line(self, line: LogLine, base: Style) -> Strip:
        gutter = Text(
            "    " if line.cell == DEVLOOP else f"{line.cell:>3} ",
            style=Style(color="grey42"),
        )
        gutter.append(STREAM_MARK.get(line.stream, "▏"), STREAM_STYLE.get(line.stream, base))
        body = Text.from_ansi(line.text, no_wrap=True) if "\x1b" in line.text else Text(line.text)
        if line.stream == "traceback":
            body.stylize(TRACEBACK_TEXT)
        elif line.stream in ("info", "replay"):
            body.stylize(STREAM_STYLE[line.stream])
        if self.search:
            body.highlight_words([self.search], MATCH, case_sensitive=False)
        text = Text.assemble(gutter, " ", body, style=base, no_wrap=True, end="")
        if line.seq in self.marked:
            text.stylize(MARKED)
        return Strip(text.render(self.app.console), text.cell_len)
