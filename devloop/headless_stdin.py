"""stdin for `devloop run` / `watch`: a cell's input() reads this process's stdin.

A pipe gives its lines in order (`printf 'alice\\n' | devloop run nb.py`), a terminal what the
user types after the prompt; at its end the cell's input() raises EOFError saying why. Each
line is read on a daemon thread (a terminal read must never hold the exit up). A password
prompt (the cell's getpass) is read with the terminal's echo off.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import IO, Any

from devloop.core import events as ev


class StdinFeeder:
    """A host listener: answers each InputRequest with the next line of `stream`."""

    def __init__(self, session: Any, stream: IO[str] | None = None) -> None:
        self.session = session
        self.stream = stream if stream is not None else sys.stdin
        self.loop = asyncio.get_running_loop()
        self._lock = threading.Lock()  # one read at a time: lines are answered in order
        session.answers_input = True

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.InputRequest):
            threading.Thread(target=self._read, args=(event.n, event.password), name="devloop-stdin",
                             daemon=True).start()

    def _read(self, n: int, password: bool = False) -> None:
        with self._lock:
            try:
                if self.stream is None:
                    line = ""
                elif password:
                    line = _read_hidden(self.stream)
                else:
                    line = self.stream.readline()
            except (OSError, ValueError):  # closed, or not readable
                line = ""
        try:
            self.loop.call_soon_threadsafe(self._answer, n, line)
        except RuntimeError:  # the loop is gone: devloop is exiting
            pass

    def _answer(self, n: int, line: str) -> None:
        text = line if line else None
        self.loop.create_task(self.session.answer_input(n, text, "" if text else self._why_no_input()))

    def _why_no_input(self) -> str:
        stream = self.stream
        try:
            tty = stream is not None and stream.isatty()
        except (OSError, ValueError):
            tty = False
        if tty:
            return "end of input at the terminal (Ctrl-D)"
        if stream is None:
            return "devloop has no stdin: run it in a terminal, or pipe the input in"
        return ("devloop's stdin has no more lines: pipe the input in "
                "(printf 'alice\\n' | devloop run FILE) or run it in a terminal")


def _read_hidden(stream: IO[str]) -> str:
    """A line typed at a terminal without echo (a cell's getpass); from a pipe, just a line."""
    try:
        fd = stream.fileno()
        if not stream.isatty():
            return stream.readline()
        import termios
    except (OSError, ValueError, ImportError, AttributeError):
        return stream.readline()
    old = termios.tcgetattr(fd)
    new = list(old)
    new[3] &= ~termios.ECHO
    try:
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        line = stream.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, old)
    sys.stderr.write("\n")  # the Enter the user typed was not echoed
    sys.stderr.flush()
    return line
