"""The live line of `devloop run` / `watch`: an unfinished line (a tqdm bar, Keras' progress, a
hand-written `\\r` loop) shown while it is being redrawn, not only when its newline comes.

- On a terminal it is drawn in place (`\\r`, erase the line, the line's latest state cut to the
  terminal's width with its tail kept), erased before any other line is written and drawn again
  after it: other output never lands in the middle of a bar.
- Elsewhere (a CI log, a pipe) its latest state is printed as a line of its own at most every
  `interval` seconds while it changes (the first one `interval` after the line began: a bar that
  finishes sooner prints only its final state), plus its final state when it ends -- never one
  line per redraw. A state not printed yet is printed by a timer on the running event loop
  (`tick()` does the same for a caller with its own clock).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from devloop.core.textfit import fit_middle

Key = tuple[int, str]  # (cell, stream)
INTERVAL_S = 5.0
ERASE = "\r\x1b[K"


@dataclass
class _State:
    since: float  # when its last print was (or the line began)
    printed: str = ""  # the state printed last ("" none)
    timer: Any = field(default=None, repr=False)


def is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def columns(stream: IO[str], default: int = 80) -> int:
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return default
    return width or default


class LiveLines:
    """Shows the unfinished lines of a reporter. `text_of(key, bound=None)` is a line's state now
    (None: the line is finished or empty; `bound`: its head and last `bound` characters will
    do), `prefix(key)` what the reporter puts before it, `file_for(key)`
    where its lines go."""

    def __init__(self, *, text_of: Callable[..., str | None], prefix: Callable[[Key], str],
                 file_for: Callable[[Key], IO[str]], clock: Callable[[], float] = time.monotonic,
                 interval: float = INTERVAL_S) -> None:
        self.text_of, self.prefix, self.file_for = text_of, prefix, file_for
        self.clock = clock
        self.interval = interval
        self._states: dict[Key, _State] = {}
        self._latest: Key | None = None  # the line drawn on a terminal: the one that changed last
        self._drawn: IO[str] | None = None  # the terminal a live line is drawn on now
        self._tty: dict[int, bool] = {}

    def _is_tty(self, stream: IO[str]) -> bool:
        known = self._tty.get(id(stream))
        if known is None:
            known = self._tty[id(stream)] = is_tty(stream)
        return known

    # -- the reporter tells ----------------------------------------------------------------------

    def changed(self, key: Key) -> None:
        """`key`'s unfinished line has new text."""
        if self._is_tty(self.file_for(key)):
            self._latest = key
            return  # drawn by redraw(), after the event
        now = self.clock()
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(since=now)
        if now - state.since >= self.interval:
            self._print_state(key, state, now)
        elif state.timer is None:
            state.timer = self._schedule(state.since + self.interval - now)

    def finished(self, key: Key) -> None:
        """`key`'s line ended (its final state is printed by the reporter)."""
        state = self._states.pop(key, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()
        if self._latest == key:
            self._latest = None

    def printed_last(self, key: Key) -> str:
        state = self._states.get(key)
        return state.printed if state is not None else ""

    # -- drawing on a terminal -----------------------------------------------------------------

    def undraw(self) -> None:
        """Erase the drawn live line (before the reporter writes a line)."""
        if self._drawn is not None:
            self._drawn.write(ERASE)
            self._drawn.flush()  # before a line on the other stream (stdout vs stderr) lands
            self._drawn = None

    def redraw(self) -> None:
        """Draw the latest changed unfinished line, cut to the terminal's width."""
        key = self._latest
        if key is None:
            return
        stream = self.file_for(key)
        width = columns(stream)
        text = self.text_of(key, max(256, 2 * width))
        if not text:
            return
        if self._drawn is not None and self._drawn is not stream:
            self.undraw()
        line = fit_middle(self.prefix(key) + text, width - 1)
        stream.write(ERASE + line)
        stream.flush()
        self._drawn = stream

    # -- timed prints off a terminal -----------------------------------------------------------

    def tick(self) -> None:
        """Print every line whose state changed and is due (the timer calls this)."""
        now = self.clock()
        for key, state in list(self._states.items()):
            if state.timer is not None:
                state.timer.cancel()  # (harmless for the one running now)
                state.timer = None
            if now - state.since >= self.interval:
                self._print_state(key, state, now)
            else:
                state.timer = self._schedule(state.since + self.interval - now)

    def _print_state(self, key: Key, state: _State, now: float) -> None:
        text = self.text_of(key)
        state.since = now
        if not text or text == state.printed:
            return  # unchanged since the last print: nothing new to say
        state.printed = text
        stream = self.file_for(key)
        redraw = self._drawn is not None
        self.undraw()
        stream.write(self.prefix(key) + text + "\n")
        stream.flush()
        if redraw:
            self.redraw()

    def _schedule(self, delay: float) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test with its own clock): tick() is called instead
            return None
        return loop.call_later(max(0.0, delay), self.tick)
