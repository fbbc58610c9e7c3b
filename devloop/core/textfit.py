"""Fitting a line into a width without losing its end.

A progress bar says where it is at its end (`45/100 [00:01<00:00, 12.3it/s]`) and what it is at
its start (`train:`): when it is too wide, the middle goes, marked with `…`. Used for the live
line the headless reporter redraws on a terminal and the app's unwrapped progress lines.
"""

from __future__ import annotations

import re
import unicodedata

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*(?:\x07|\x1b\\)")


def char_width(ch: str) -> int:
    if ch < "\u0300":  # ASCII and Latin: one column (control characters are not expected here)
        return 1
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Terminal columns `text` takes (ANSI codes take none)."""
    if "\x1b" in text:
        text = ANSI_RE.sub("", text)
    if text.isascii():
        return len(text)
    return sum(char_width(ch) for ch in text)


def _take(text: str, width: int, from_end: bool) -> str:
    out, used = [], 0
    for ch in (reversed(text) if from_end else text):
        w = char_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(reversed(out) if from_end else out)


def fit_middle(text: str, width: int, head_share: float = 1 / 3) -> str:
    """`text` in at most `width` columns: unchanged when it fits, else its head and its tail with
    `…` between (the tail gets the larger share: a progress bar's numbers are there). ANSI codes
    are dropped from a line that has to be cut."""
    if width <= 0:
        return ""
    if cell_width(text) <= width:
        return text
    if "\x1b" in text:
        text = ANSI_RE.sub("", text)
    if width == 1:
        return "…"
    room = width - 1
    head = _take(text, int(room * head_share), False)
    return head + "…" + _take(text, room - cell_width(head), True)  # the tail gets what is left
