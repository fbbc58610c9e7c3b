"""Per-cell ring buffers for the log: bounded memory however much a cell prints.

Pure Python (no textual): the app appends `Output` chunks here as they arrive and the log widget
renders only the visible lines from these buffers, so a cell printing 100,000 lines costs an
append per line, not a widget update per line. Chunks are split into lines; a line's unfinished
tail waits for its newline (or the cell's end) and is shown meanwhile as a live last line
(`partial_lines`). A carriage return keeps only the text after it, the way a terminal shows a
progress bar: a tqdm bar redrawn with \r moves in place.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass, field

from devloop.core.textfit import cell_width

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*(?:\x07|\x1b\\)")
PARTIAL_LIMIT = 64 * 1024  # an unterminated line longer than this is shown as it is
DEVLOOP = -1  # the `cell` of lines devloop itself writes (diagnostics, run summaries)


@dataclass(slots=True, eq=False)
class LogLine:
    seq: int  # order of arrival, unique: the render cache key
    cell: int
    stream: str  # "stdout" | "stderr" | "traceback" | "info" | "replay" (marks replayed output)
    text: str  # may hold ANSI colour codes
    width: int  # terminal columns (ANSI codes take none, a wide character two)


@dataclass
class Ring:
    """A bounded buffer that counts what it appended, so a viewer can tell how far it shifted."""

    maxlen: int
    lines: deque = field(init=False)
    appended: int = 0

    def __post_init__(self) -> None:
        self.lines = deque(maxlen=self.maxlen)

    def append(self, line: LogLine) -> None:
        self.lines.append(line)
        self.appended += 1

    @property
    def dropped(self) -> int:
        return self.appended - len(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> LogLine:
        return self.lines[index]

    def resize(self, maxlen: int) -> None:
        kept = deque(self.lines, maxlen=maxlen)
        self.maxlen, self.lines = maxlen, kept


def clean_line(raw: str) -> str:
    """What a terminal would show for this line: the text after the last carriage return."""
    if "\r" in raw:
        parts = [p for p in raw.split("\r") if p]
        raw = parts[-1] if parts else ""
    return raw.expandtabs(4) if "\t" in raw else raw


class LogStore:
    """All log lines: one ring per cell (`scrollback` lines each) and one ring across cells."""

    def __init__(self, scrollback: int = 10_000) -> None:
        self.scrollback = max(1, int(scrollback))
        self.by_cell: dict[int, Ring] = {}
        self.all = Ring(self.scrollback)
        self.max_width = 0
        self._partial: dict[tuple[int, str], str] = {}
        self.partial_version = 0  # bumped whenever an unfinished line changes
        self._seq = itertools.count()
        self._cells = 1

    def set_cell_count(self, count: int) -> None:
        """The cross-cell ring holds `scrollback` lines per cell (plus devloop's own)."""
        self._cells = max(1, count)
        wanted = self.scrollback * (self._cells + 1)
        if wanted != self.all.maxlen:
            self.all.resize(wanted)

    def ring(self, cell: int) -> Ring:
        ring = self.by_cell.get(cell)
        if ring is None:
            ring = self.by_cell[cell] = Ring(self.scrollback)
        return ring

    def add_output(self, cell: int, stream: str, text: str) -> int:
        """Append a chunk of output; returns how many complete lines it added."""
        key = (cell, stream)
        pending = self._partial.pop(key, "")
        text = pending + text if pending else text
        if "\n" not in text and len(text) > PARTIAL_LIMIT:
            pieces, tail = [text], ""
        else:
            pieces = text.split("\n")
            tail = pieces.pop()
        if tail:
            self._partial[key] = tail
        if pending or tail:  # the live unfinished line changed: the app redraws it
            self.partial_version += 1
        for piece in pieces:
            self._add(cell, stream, piece)
        return len(pieces)

    def add_lines(self, cell: int, stream: str, text: str) -> list[LogLine]:
        """Append whole lines (a traceback, a devloop message); returns them."""
        return [self._add(cell, stream, piece) for piece in text.rstrip("\n").split("\n")]

    def finish_cell(self, cell: int) -> None:
        """The cell ended: its unterminated lines are complete now."""
        for key in [k for k in self._partial if k[0] == cell]:
            self._add(cell, key[1], self._partial.pop(key))
            self.partial_version += 1

    def partial_lines(self, cell: int | None = None) -> list[LogLine]:
        """The unfinished lines (of `cell`, or of every cell) as a terminal shows them now; not
        stored in the rings: they are replaced as more text arrives."""
        out = []
        for (c, stream), raw in self._partial.items():
            if cell is not None and c != cell:
                continue
            text = clean_line(raw)
            if text:
                out.append(LogLine(-1, c, stream, text, cell_width(text)))
        return out

    def clear(self) -> None:
        self.by_cell.clear()
        self.all = Ring(self.all.maxlen)
        self._partial.clear()
        self.partial_version += 1
        self.max_width = 0

    def _add(self, cell: int, stream: str, raw: str) -> LogLine:
        raw = clean_line(raw.rstrip("\r")) if ("\r" in raw or "\t" in raw) else raw
        width = cell_width(raw)  # terminal columns: a wide character takes two
        line = LogLine(next(self._seq), cell, stream, raw, width)
        self.ring(cell).append(line)
        self.all.append(line)
        if width > self.max_width:
            self.max_width = width
        return line
