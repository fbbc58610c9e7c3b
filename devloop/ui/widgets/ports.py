"""The ports line: each forwarded port (`localhost:6006 → target:6006`), its open connections and
the bytes it carried; hidden while the session forwards nothing. `o` opens a forwarded URL in
the browser (each press the next forward)."""

from __future__ import annotations

import threading
import webbrowser
from typing import Any, Callable

from rich.text import Text
from textual.widgets import Static

from devloop.core import events as ev
from devloop.core.ports.spec import ForwardSpec
from devloop.core.units import human_bytes

REFRESH_S = 1.0


class PortsLine(Static):
    def __init__(self, session: Callable[[], Any], *, id: str | None = None) -> None:
        """`session`: the app's running Session (its `ports` Forwarder), or None."""
        super().__init__(id=id)
        self._session = session
        self.forwards: dict[int, ev.PortForward] = {}  # by local port, as the events said
        self._next_open = 0

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self.refresh_counts)

    def on_forward(self, event: ev.PortForward) -> None:
        if event.state == "closed":
            self.forwards.pop(event.local, None)
        else:
            self.forwards[event.local] = event
        self.set_class(bool(self.forwards), "-on")  # the stylesheet hides it without
        self.refresh_counts()

    def reset(self) -> None:
        """A new session (another profile): its forwards say so themselves."""
        self.forwards.clear()
        self.set_class(False, "-on")

    def _live(self) -> dict[int, tuple[int, int, int]]:
        """local port -> (open connections, bytes in, bytes out), from the session's forwarder."""
        session = self._session()
        ports = getattr(session, "ports", None) if session is not None else None
        out: dict[int, tuple[int, int, int]] = {}
        for state in getattr(ports, "states", ()) or ():
            got, sent = ports.bytes_of(state)
            out[state.spec.local] = (state.open, got, sent)
        return out

    def refresh_counts(self) -> None:
        if self.forwards:
            self.update(self.render_text(self._live()))

    def render_text(self, live: dict[int, tuple[int, int, int]]) -> Text:
        text = Text("ports ", style="bold")
        for i, (local, event) in enumerate(sorted(self.forwards.items())):
            if i:
                text.append("  ·  ", style="dim")
            bind = "localhost" if event.bind in ("127.0.0.1", "localhost") else event.bind
            text.append(f"{bind}:{local} → {ForwardSpec(local, event.remote, event.host).remote_label}")
            n, got, sent = live.get(local, (0, 0, 0))
            text.append(f" {n} open, {human_bytes(got + sent)}", style="dim")
        return text

    def next_url(self) -> str | None:
        """The URL `o` opens now: the forwards in turn."""
        if not self.forwards:
            return None
        locals_ = sorted(self.forwards)
        local = locals_[self._next_open % len(locals_)]
        self._next_open += 1
        return f"http://localhost:{local}/"

    def open_next(self) -> str | None:
        """Open the next forwarded URL in the browser (on a thread: a browser start can block)."""
        url = self.next_url()
        if url is not None:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        return url
