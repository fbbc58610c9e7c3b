"""The sync line: watch on/off, the last sync (files, bytes, ms) or the one in progress, run status."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


from devloop.core.units import human_bytes, plural  # the same words as `devloop run`


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

    def set_in_place(self) -> None:
        """The target runs on the project folder itself: there is nothing to sync."""
        self.last = "in place (no sync)"
        self.update(self.render_text())

    def reset(self) -> None:
        """Nothing synced or run yet (a new profile)."""
        self.last, self.progress, self.status = "no sync yet", "", Text()
        self.update(self.render_text())

    def set_watch(self, on: bool) -> None:
        self.watching = on
        self.update(self.render_text())

    def set_sync(self, files: int, nbytes: int, deleted: int, ms: float) -> None:
        deleted_part = f", {deleted} deleted" if deleted else ""
        self.last = f"last sync {plural(files, 'file')}, {human_bytes(nbytes)}{deleted_part}, {ms:.0f} ms"
        self.progress = ""
        self.update(self.render_text())

    def set_progress(self, files_done: int, files_total: int, bytes_done: int, bytes_total: int) -> None:
        pct = 100 * bytes_done / bytes_total if bytes_total else 100
        self.progress = f"syncing {files_done}/{plural(files_total, 'file')} {pct:.0f}%"
        self.update(self.render_text())

    def set_status(self, status: Text | str) -> None:
        self.status = status if isinstance(status, Text) else Text(status)
        self.update(self.render_text())

    def set_view(self, view: str) -> None:
        self.view = view
        self.update(self.render_text())

    def on_resize(self) -> None:
        self.update(self.render_text())

    def render_text(self) -> Text:
        """The longest form that fits the width: the run status stays whole the longest (at 80
        columns the view and the sync's details go first), then cut with `…`."""
        width = self.content_size.width
        forms = [(True, "full"), (False, "full"), (False, "short"), (False, "")]
        text = self._line(True, "full")
        if not width:
            return text
        for view, sync in forms:
            text = self._line(view, sync)
            if text.cell_len <= width:
                return text
        text.truncate(width, overflow="ellipsis")
        return text

    def _line(self, view: bool, sync: str) -> Text:
        text = Text()
        text.append("watch ", "grey62")
        text.append("on" if self.watching else "off", "bold green" if self.watching else "bold yellow")
        if sync:
            shown = self.progress or self.last
            if sync == "short" and not self.progress:
                shown = shown.split(", ")[0].replace("last sync ", "synced ")
            text.append("  │  ", "grey42")
            text.append(shown, "yellow" if self.progress else "white")
        if view or self.view != "log: all cells":  # a filter or a search is always said
            text.append("  │  ", "grey42")
            text.append(self.view, "grey62")
        if self.status:
            text.append("  │  ", "grey42")
            text.append_text(self.status)
        return text
