"""The input box: a cell waits in input() -- as Jupyter's input request, under the log.

The prompt came as the cell's output already (as Python writes it); the box repeats it with the
cell's number. enter sends the line, esc sends end of input (the cell's input() raises EOFError
saying the box was closed). A newer question replaces an open box; the cell ending closes it.
"""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label

from devloop.core import events as ev

Answer = Callable[[int, "str | None"], None]  # (question n, the line or None: end of input)


class InputBox(Horizontal):
    """`[cell 2] name? [__________]`; docked under the log while its cell waits."""

    DEFAULT_CSS = """
    InputBox { height: 3; dock: bottom; border: tall $accent; padding: 0 1; }
    InputBox Label { padding: 1 1 0 0; width: auto; }
    InputBox Input { width: 1fr; border: none; height: 1; margin: 1 0 0 0; }
    """

    def __init__(self, event: ev.InputRequest, answer: Answer) -> None:
        super().__init__(id="input-box")
        self.request = event
        self.answer = answer
        self._answered = False

    def compose(self) -> ComposeResult:
        prompt = self.request.prompt.strip() or "input"
        where = f"[cell {self.request.cell}] " if self.request.cell >= 0 else ""
        yield Label(f"{where}{prompt}")
        yield Input(placeholder="enter: send this line, esc: end of input", password=self.request.password,
                    id="input-line")

    def on_mount(self) -> None:
        self.call_after_refresh(self.query_one("#input-line", Input).focus)

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.stop()
        self._send(message.value + "\n")

    def key_escape(self) -> None:
        self._send(None)

    def _send(self, text: str | None) -> None:
        if not self._answered:
            self._answered = True
            self.answer(self.request.n, text)
        self.remove()

    @classmethod
    def ask(cls, app, event: ev.InputRequest, answer: Answer, where: str = "#logpane") -> None:  # noqa: ANN001
        """Open a box for `event` under `where` (an open one is closed: the kernel asks one at a time)."""
        cls.close(app)
        app.query_one(where).mount(cls(event, answer))

    @classmethod
    def close(cls, app, cell: int | None = None) -> None:  # noqa: ANN001
        """Take the open box away (only the one of `cell`, when given), unanswered."""
        for box in app.query(cls):
            if cell is None or box.request.cell == cell:
                box._answered = True
                box.remove()
