"""The cells panel: one row per code cell with its line, state and last duration."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

STATE_LOOK = {
    "pending": ("○ pending", "grey62"),
    "running": ("● running", "bold yellow"),
    "ok": ("✓ ok", "green"),
    "failed": ("✗ failed", "bold red"),
    "stale": ("◌ stale", "dark_orange"),
    "": ("", ""),
}
COLUMNS = (("#", "index"), ("cell", "title"), ("line", "line"), ("state", "state"), ("time", "time"))
WIDTHS = {"time": 7}  # "10.42 s", "12m05s…": the column is sized up front, since a cell's time
# arrives after its row (update_cell does not widen a column; an auto width was cut to "11 m")


@dataclass
class CellRow:
    index: int
    title: str
    line: int
    state: str = ""
    ms: float | None = None


def format_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{minutes:.0f}m{seconds:02.0f}s"


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

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key, width=WIDTHS.get(key))

    def set_cells(self, cells: list[CellRow]) -> None:
        """A new parse: keep the state and time of cells that kept their index."""
        old = self.rows_by_cell
        selected = self.cursor_row
        self.clear()
        self.rows_by_cell = {}
        for row in cells:
            previous = old.get(row.index)
            if previous is not None:
                row.state, row.ms = previous.state or row.state, previous.ms
            self.rows_by_cell[row.index] = row
            self.add_row(
                Text(str(row.index), style="grey62"),
                row.title,
                Text(str(row.line), style="grey62"),
                state_text(row.state),
                format_ms(row.ms),
                key=str(row.index),
            )
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
