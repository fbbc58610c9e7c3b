"""The header line: project, file, profile and the target's state (no clock: snapshots stay stable)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

TARGET_LOOK = {
    "starting": "yellow",
    "ready": "green",
    "running": "green",
    "reconnecting": "yellow",
    "kernel_died": "bold red",
    "failed": "bold red",
    "error": "bold red",
    "stopping": "yellow",
    "stopped": "grey62",
    "attached": "green",
    "detaching": "yellow",
    "detached": "grey62",
}

SESSION_LOOK = {  # the badge's first word -> its style
    "attached": "bold green",
    "kernel": "bold yellow",  # "kernel kept": the link dropped, the kernel goes on
    "reattached": "bold green",
    "reconnected": "yellow",
}


class HeaderBar(Static):
    def __init__(self, *, project: str, profile: str, file: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project, self.profile, self.file = project, profile, file
        self.kind = ""
        self.state = "starting"
        self.message = ""
        self.kernel = ""
        self.session = ""  # the session badge: "attached · 2/3 kept", "reconnecting", ...

    def on_mount(self) -> None:
        self.update(self.render_text())

    def set_target(self, state: str, message: str = "", profile: str = "", kind: str = "") -> None:
        self.state, self.message = state, message
        self.profile = profile or self.profile
        self.kind = kind or self.kind
        self.update(self.render_text())

    def set_session(self, badge: str) -> None:
        """The session kernel's link as a badge after the target state ("" hides it)."""
        self.session = badge
        self.update(self.render_text())

    def set_kernel(self, python: str, pid: int) -> None:
        self.kernel = f"python {python} · pid {pid}"
        self.update(self.render_text())

    def set_file(self, file: str) -> None:
        self.file = file
        self.update(self.render_text())

    def on_resize(self) -> None:
        self.update(self.render_text())

    def render_text(self) -> Text:
        """The full line; where it does not fit (80 columns), a compact one without the labels
        and the kind, so the target's state and the session badge stay on screen."""
        full = self._line(compact=False)
        width = self.content_size.width
        if width and full.cell_len > width and self._line(compact=False, brief=True).cell_len > width:
            return self._line(compact=True)
        return full  # where only the message and kernel do not fit, they are cut at the edge

    def _line(self, *, compact: bool, brief: bool = False) -> Text:
        text = Text.assemble(("devloop ", "bold"), (self.project, "bold cyan"))
        if self.file:
            text.append(f"  {self.file}", "white")
        text.append("  " if compact else "  profile ", "grey62")
        text.append(self.profile, "bold")
        if self.kind and not compact:
            text.append(f" ({self.kind})", "grey62")
        text.append("  " if compact else "  target ", "grey62")
        text.append(self.state, TARGET_LOOK.get(self.state, "white"))
        if self.session:
            text.append(" [", "grey62")
            text.append(self.session, SESSION_LOOK.get(self.session.split()[0], "white"))
            text.append("]", "grey62")
        if brief:
            return text
        if self.message:
            text.append(f" {self.message}", "grey62")
        if self.kernel:
            text.append(f"  {self.kernel}", "grey62")
        return text
