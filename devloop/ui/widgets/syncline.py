"""The sync line: watch on/off, the last sync (files, bytes, ms) or the one in progress, run status."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class SyncLine(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.watching = True
        self.last = "no sync yet"
        self.progress = ""
        self.status = Text()
        self.view = "log: all cells"

    def on_mount(self) -> None:
        self.update(self.render_text())

    def set_watch(self, on: bool) -> None:
        self.watching = on
        self.update(self.render_text())

    def set_sync(self, files: int, nbytes: int, deleted: int, ms: float) -> None:
        deleted_part = f", {deleted} deleted" if deleted else ""
        self.last = f"last sync {files} files, {human_bytes(nbytes)}{deleted_part}, {ms:.0f} ms"
        self.progress = ""
        self.update(self.render_text())

    def set_progress(self, files_done: int, files_total: int, bytes_done: int, bytes_total: int) -> None:
        pct = 100 * bytes_done / bytes_total if bytes_total else 100
        self.progress = f"syncing {files_done}/{files_total} files {pct:.0f}%"
        self.update(self.render_text())

    def set_status(self, status: Text | str) -> None:
        self.status = status if isinstance(status, Text) else Text(status)
        self.update(self.render_text())

    def set_view(self, view: str) -> None:
        self.view = view
        self.update(self.render_text())

    def render_text(self) -> Text:
        text = Text()
        text.append("watch ", "grey62")
        text.append("on" if self.watching else "off", "bold green" if self.watching else "bold yellow")
        text.append("  │  ", "grey42")
        text.append(self.progress or self.last, "yellow" if self.progress else "white")
        text.append("  │  ", "grey42")
        text.append(self.view, "grey62")
        if self.status:
            text.append("  │  ", "grey42")
            text.append_text(self.status)
        return text
