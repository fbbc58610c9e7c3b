"""Numbers that follow chosen names in plain output: `[ui] metrics = ["loss", "val_acc"]`.

Recognised shapes (what training loops print without being asked): `loss=0.123`,
`loss: 0.12`, `loss 0.12` is not (too loose), tqdm postfixes (`..., loss=0.123, acc=0.9]`),
Keras (`- loss: 0.1234 - val_acc: 0.9`), Lightning (`v_num=0, train_loss=0.123`), JSON-ish
(`"loss": 0.12`). A name matches whole: `loss` is not found inside `val_loss`.

Progress bars redraw the same line with `\\r`: a redraw counts only when a value changed
(a bar redrawn 10 times a second without a new postfix adds no points); each line that ends
with a newline counts. Stdlib only, no textual: the session and headless reporter use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf))"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "rmse", "perplexity", "ppl", "wer", "cer", "time")


def lower_is_better(name: str) -> bool:
    """Which direction 'best' means: losses and errors go down, the rest (accuracy, F1) up."""
    low = name.lower()
    return any(word in low for word in _LOWER_IS_BETTER)


class MetricParser:
    """Feed it output chunks; it returns the (name, value) pairs the completed segments held."""

    def __init__(self, names: tuple[str, ...] | list[str]) -> None:
        self.names = tuple(dict.fromkeys(n for n in names if n))
        alternatives = "|".join(re.escape(n) for n in sorted(self.names, key=len, reverse=True))
        self._pattern = re.compile(
            r"(?<![\w.])[\"']?(" + alternatives + r")[\"']?\s*(?:=|:)\s*" + _NUMBER + r"(?![\w.])",
            re.IGNORECASE) if self.names else None
        self._canonical = {n.lower(): n for n in self.names}
        self._tail: dict[object, str] = {}
        self._last_redraw: dict[str, float] = {}
        self._redrawing: set[object] = set()  # keys whose current line started after a \r

    def feed(self, text: str, key: object = None) -> list[tuple[str, float]]:
        """Values found in the complete segments of `text` (what follows the last `\\r` or `\\n`
        waits for the next chunk). `key` keeps streams apart (stdout and stderr)."""
        if self._pattern is None:
            return []
        buf = self._tail.pop(key, "") + text
        found: list[tuple[str, float]] = []
        start = 0
        for match in re.finditer(r"\r\n|\n|\r", buf):
            segment = buf[start:match.start()]
            start = match.end()
            # a line that was being redrawn (a bar's last state before its newline) is a redraw too
            redraw = match.group() == "\r" or key in self._redrawing
            found.extend(self._segment(segment, redraw=redraw))
            if match.group() == "\r":
                self._redrawing.add(key)
            else:
                self._redrawing.discard(key)
        rest = buf[start:]
        if rest:
            self._tail[key] = rest[-4096:]  # a line without end never grows memory without bound
        return found

    def flush(self, key: object = None) -> list[tuple[str, float]]:
        """The values of an unfinished last line (at the end of a cell)."""
        rest = self._tail.pop(key, "")
        return self._segment(rest, redraw=False) if rest else []

    def parse_line(self, line: str) -> list[tuple[str, float]]:
        """Every (name, value) in one line, in order (no redraw filtering)."""
        if self._pattern is None:
            return []
        out = []
        if "\x1b" in line:  # Keras 3 and rich bars colour parts of the line
            line = _ANSI.sub("", line)
        for match in self._pattern.finditer(line):
            try:
                value = float(match.group(2))
            except ValueError:
                continue
            out.append((self._canonical[match.group(1).lower()], value))
        return out

    def _segment(self, segment: str, redraw: bool) -> list[tuple[str, float]]:
        pairs = self.parse_line(segment)
        if not redraw:
            for name, value in pairs:
                self._last_redraw[name] = value
            return pairs
        kept = []
        for name, value in pairs:
            last = self._last_redraw.get(name)
            if last is None or not (value == last or (math.isnan(value) and math.isnan(last))):
                kept.append((name, value))
            self._last_redraw[name] = value
        return kept


@dataclass
class Series:
    name: str
    values: list[float] = field(default_factory=list)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    @property
    def best(self) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if lower_is_better(self.name) else max(finite)


class MetricHistory:
    """Every value seen per metric (bounded: the newest MAX_POINTS), for a chart and a summary."""

    MAX_POINTS = 10_000

    def __init__(self, names: tuple[str, ...] | list[str] = ()) -> None:
        self.series: dict[str, Series] = {n: Series(n) for n in names}

    def add(self, name: str, value: float) -> int:
        """Record one value; returns its step (1-based count of values of that metric)."""
        series = self.series.setdefault(name, Series(name))
        series.values.append(value)
        if len(series.values) > self.MAX_POINTS:
            del series.values[: len(series.values) - self.MAX_POINTS]
        return len(series.values)

    def summary_lines(self) -> list[str]:
        """`metric loss: last 0.12, best 0.10 (min)` for each metric that had values."""
        lines = []
        for series in self.series.values():
            if not series.values:
                continue
            direction = "min" if lower_is_better(series.name) else "max"
            best = series.best
            lines.append(f"metric {series.name}: last {_fmt(series.last)}, best "
                         f"{_fmt(best) if best is not None else 'n/a'} ({direction}), "
                         f"{len(series.values)} value{'s' if len(series.values) != 1 else ''}")
        return lines


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6g}"
