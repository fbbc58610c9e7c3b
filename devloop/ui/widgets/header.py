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
}


class HeaderBar(Static):
    def __init__(self, *, project: str, profile: str, file: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project, self.profile, self.file = project, profile, file
        self.kind = ""
        self.state = "starting"
        self.message = ""
        self.kernel = ""

    def on_mount(self) -> None:
        self.update(self.render_text())

    def set_target(self, state: str, message: str = "", profile: str = "", kind: str = "") -> None:
        self.state, self.message = state, message
        self.profile = profile or self.profile
        self.kind = kind or self.kind
        self.update(self.render_text())

    def set_kernel(self, python: str, pid: int) -> None:
        self.kernel = f"python {python} · pid {pid}"
        self.update(self.render_text())

    def set_file(self, file: str) -> None:
        self.file = file
        self.update(self.render_text())

    def render_text(self) -> Text:
        text = Text.assemble(("devloop ", "bold"), (self.project, "bold cyan"))
        if self.file:
            text.append(f"  {self.file}", "white")
        text.append("  profile ", "grey62")
        text.append(self.profile, "bold")
        if self.kind:
            text.append(f" ({self.kind})", "grey62")
        text.append("  target ", "grey62")
        text.append(self.state, TARGET_LOOK.get(self.state, "white"))
        if self.message:
            text.append(f" {self.message}", "grey62")
        if self.kernel:
            text.append(f"  {self.kernel}", "grey62")
        return text
