"""App-level messages: the one way core events reach the widgets."""

from __future__ import annotations

from textual.message import Message


class EventsPending(Message):
    """Core events wait in the app's inbox: drain them through `handle_event`.

    One message stands for a burst of events (a cell printing fast emits thousands), so the
    message queue never fills with output chunks and a key press is handled next.
    """


class CellChosen(Message):
    """Enter on a row of the cells panel."""

    def __init__(self, cell: int) -> None:
        super().__init__()
        self.cell = cell
