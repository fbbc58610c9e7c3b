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
        """The kernel's Python and pid ("" python: no kernel)."""
        self.kernel = f"python {python} · pid {pid}" if python else ""
        self.update(self.render_text())

    def set_file(self, file: str) -> None:
        self.file = file
        self.update(self.render_text())

    def on_resize(self) -> None:
        self.update(self.render_text())

    def render_text(self) -> Text:
        """The longest form that fits: with labels, the kind, the state's message and the
        kernel; then without the kernel, the message, the labels; then with the file's folder
        cut; only then cut at the edge with `…` (at 80 columns the state and badge stay)."""
        width = self.content_size.width
        forms = [dict(compact=False), dict(compact=False, kernel=False), dict(compact=False, brief=True),
                 dict(compact=True), dict(compact=True, brief=True),
                 dict(compact=True, brief=True, short_file=True)]
        line = self._line(**forms[0])
        if not width:
            return line
        for form in forms:
            line = self._line(**form)
            if line.cell_len <= width:
                return line
        line.truncate(width, overflow="ellipsis")
        return line

    def _line(self, *, compact: bool, brief: bool = False, kernel: bool = True,
              short_file: bool = False) -> Text:
        text = Text.assemble(("devloop " if not compact else "", "bold"), (self.project, "bold cyan"))
        if self.file:
            file = self.file.rsplit("/", 1)[-1] if short_file else self.file
            text.append(f"  {file}", "white")
        text.append("  " if compact else "  profile ", "grey62")
        text.append(self.profile, "bold")
        if self.kind and not compact and self.kind != self.profile:  # not "local (local)"
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
        if self.kernel and kernel:
            text.append(f"  {self.kernel}", "grey62")
        return text
