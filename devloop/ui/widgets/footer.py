"""The key footer: the essential keys always, then as many others (in their order) as fit the
width whole, and `^p palette`; nothing is cut off at the edge (Textual's footer cuts the last
keys and leaves stray letters). `?` lists every key."""

from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

PALETTE = 13  # columns kept for `^p palette`


def key_width(widget: FooterKey) -> int:
    """Columns a compact footer key takes: `k Label `."""
    return len(widget.key_display) + len(widget.description) + 2


class KeysFooter(Footer):
    def __init__(self, essential: tuple[str, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.essential = essential
        self._width: int | None = None

    def compose(self):
        self._width = width = self.app.size.width
        widgets = list(super().compose())
        keys = [w for w in widgets if isinstance(w, FooterKey) and not w.has_class("-command-palette")]
        room = width - PALETTE - sum(key_width(w) for w in keys if w.key in self.essential)
        keep = set()
        for widget in keys:
            if widget.key in self.essential:
                keep.add(id(widget))
            elif key_width(widget) <= room:
                keep.add(id(widget))
                room -= key_width(widget)
            else:
                room = -1  # keep the order: nothing after a key that did not fit
        for widget in widgets:
            if widget in keys and id(widget) not in keep:
                continue
            yield widget

    def on_resize(self) -> None:
        if self._width is not None and self.app.size.width != self._width:
            self.call_after_refresh(self.recompose)
