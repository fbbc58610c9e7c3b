"""The cells panel: one row per code cell with its line, state and last duration.

The title column takes the width the others leave (a long title ends in `…`); where the panel is
narrow (80 columns) the line column goes first, so state and time stay whole."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

STATE_LOOK = {
    "pending": ("○ pending", "grey62"),
    "running": ("● running", "bold yellow"),
    "ok": ("✓ ok", "green"),
    "failed": ("✗ failed", "bold red"),
    "interrupted": ("■ interrupted", "bold yellow"),  # stopped by the user (i): not an error
    "stale": ("◌ stale", "dark_orange"),
    "": ("", ""),
}
COLUMNS = (("#", "index"), ("cell", "title"), ("line", "line"), ("state", "state"), ("time", "time"))
WIDTHS = {"index": 2, "line": 4, "state": 13, "time": 7}  # "■ interrupted", "10.42 s", "12m05s…":
# sized up front, since a state or time arrives after its row (update_cell does not widen a column)
PADDING = 2  # a DataTable cell's padding, both sides
MIN_TITLE = 12  # below this the line column is left out


@dataclass
class CellRow:
    index: int
    title: str
    line: int
    state: str = ""
    ms: float | None = None


def format_ms(ms: float | None) -> str:
    from devloop.core.units import human_ms

    return "" if ms is None else human_ms(ms)


def format_running(ms: float) -> str:
    """A running cell's time so far: whole seconds, marked as still counting."""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.0f} s…"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes:.0f}m{seconds:02.0f}s…"


def state_text(state: str) -> Text:
    label, style = STATE_LOOK.get(state, (state, ""))
    return Text(label, style=style)


class CellsPanel(DataTable):
    """Rows keyed by cell index; updated in place as cell events arrive."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.rows_by_cell: dict[int, CellRow] = {}
        self._layout: tuple[int, bool] | None = None  # (title width, line column shown)

    def on_mount(self) -> None:
        self._add_columns()

    def _fit(self) -> tuple[int, bool]:
        """The title's width and whether the line column fits, for the panel's width now."""
        room = self.scrollable_content_region.width or 44
        others = sum(WIDTHS[key] + PADDING for key in ("index", "state", "time")) + PADDING
        title = room - others - (WIDTHS["line"] + PADDING)
        if title >= MIN_TITLE:
            return title, True
        return max(6, room - others), False

    def _add_columns(self) -> None:
        self._layout = title, with_line = self._fit()
        for label, key in COLUMNS:
            if key == "line" and not with_line:
                continue
            self.add_column(label, key=key, width=title if key == "title" else WIDTHS.get(key))

    def on_resize(self) -> None:
        if self._layout is not None and self._fit() != self._layout:
            rows = list(self.rows_by_cell.values())
            self.clear(columns=True)
            self._add_columns()
            self.set_cells(rows)

    def set_cells(self, cells: list[CellRow]) -> None:
        """A new parse: keep the state and time of cells that kept their index."""
        old = self.rows_by_cell
        selected = self.cursor_row
        self.clear()
        self.rows_by_cell = {}
        with_line = self._layout is None or self._layout[1]
        for row in cells:
            previous = old.get(row.index)
            if previous is not None:
                row.state, row.ms = previous.state or row.state, previous.ms
            self.rows_by_cell[row.index] = row
            values = [Text(str(row.index), style="grey62"),
                      Text(row.title, no_wrap=True, overflow="ellipsis")]
            if with_line:
                values.append(Text(str(row.line), style="grey62"))
            values += [state_text(row.state), format_ms(row.ms)]
            self.add_row(*values, key=str(row.index))
        if cells:
            self.move_cursor(row=min(max(selected, 0), len(cells) - 1), animate=False)

    def set_state(self, cell: int, state: str) -> None:
        row = self.rows_by_cell.get(cell)
        if row is None:
            return
        row.state = state
        self.update_cell(str(cell), "state", state_text(state))

    def set_time(self, cell: int, ms: float, *, running: bool = False) -> None:
        """The cell's duration; `running`: the time so far (not kept as its last duration)."""
        row = self.rows_by_cell.get(cell)
        if row is None:
            return
        if not running:
            row.ms = ms
        self.update_cell(str(cell), "time", format_running(ms) if running else format_ms(ms))

    @property
    def selected_cell(self) -> int | None:
        if not self.rows_by_cell or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        except Exception:  # empty table / stale cursor
            return None
        return int(key) if key is not None else None
