"""Modal dialogs: promote (target, name, commit or not), the profile picker, and the question
asked before stopping a session whose cell is still running.

Each dialog scrolls when the screen is short (80x24) and keeps its buttons docked at its bottom,
so they are always on screen; titles wrap instead of being cut."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Select
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class PromoteRequest:
    target: str
    name: str
    commit: bool
    allow_dirty: bool = False  # pin a code revision with uncommitted changes (recorded as dirty)
    allow_unpinned: bool = False  # accept an image without a registry digest


class PromoteDialog(ModalScreen[PromoteRequest | None]):
    """Ask where to promote the working setup; dismissed with a PromoteRequest or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, targets: list[str], name: str, note: str = "", *, cited: str = "") -> None:
        """`cited`: the green run a promote now would cite, or why none (shown as a line)."""
        super().__init__()
        self.targets = targets or ["argo"]
        self.cited = cited
        self.default_name = name
        self.note = note

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="promote-box", classes="dialog"):
            with Horizontal(classes="dialog-buttons"):
                yield Button("Promote", variant="primary", id="promote-ok")
                yield Button("Cancel", id="promote-cancel")
            yield Label("Promote the working setup to a pipeline", classes="dialog-title")
            yield Label("Target", classes="field-label")
            yield Select(
                [(t, t) for t in self.targets], value=self.targets[0], allow_blank=False,
                id="promote-target",
            )
            yield Label("Pipeline name", classes="field-label")
            yield Input(self.default_name, id="promote-name", placeholder="DNS-1123 name")
            yield Checkbox("Commit the pipeline file to git", value=False, id="promote-commit")
            yield Checkbox("Allow uncommitted changes (recorded as dirty)", value=False, id="promote-dirty")
            yield Checkbox("Allow an image without a registry digest", value=False, id="promote-unpinned")
            if self.cited:
                yield Label(self.cited, id="promote-cited", classes="dialog-note")
            if self.note:
                yield Label(self.note, classes="dialog-note")

    def on_mount(self) -> None:
        name = self.query_one("#promote-name", Input)
        name.cursor_blink = False
        name.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "promote-ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        name = self.query_one("#promote-name", Input).value.strip()
        if not name:
            self.notify("A pipeline name is needed", severity="error")
            return
        self.dismiss(
            PromoteRequest(
                target=str(self.query_one("#promote-target", Select).value),
                name=name,
                commit=self.query_one("#promote-commit", Checkbox).value,
                allow_dirty=self.query_one("#promote-dirty", Checkbox).value,
                allow_unpinned=self.query_one("#promote-unpinned", Checkbox).value,
            )
        )


class ProfilePicker(ModalScreen[str | None]):
    """Pick the profile to switch to; dismissed with its name or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, profiles: list[str], current: str) -> None:
        super().__init__()
        self.profiles = profiles
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="profile-box", classes="dialog"):
            yield Label("Switch profile", classes="dialog-title")
            yield Label("The target is stopped and one for the chosen profile started.",
                        classes="dialog-text")
            yield OptionList(
                *[Option(f"{name}  (current)" if name == self.current else name, id=name)
                  for name in self.profiles],
                id="profile-list",
            )

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.profiles:
            options.highlighted = self.profiles.index(self.current)
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class StopConfirm(ModalScreen[str | None]):
    """`q` while a cell runs: stopping would lose the cell's work and the kernel's state, so ask.
    Dismissed with "stop", "detach" or None (cancel). `q` or ctrl+c again also means stop (the
    app's own bindings handle those while this is shown)."""

    BINDINGS = [
        Binding("y", "choose('stop')", "Stop"),
        Binding("d", "choose('detach')", "Detach"),
        Binding("escape,n", "choose('')", "Cancel"),
    ]

    def __init__(self, cell: int | None = None) -> None:
        super().__init__()
        self.cell = cell

    def compose(self) -> ComposeResult:
        which = "A cell is running" if self.cell is None else f"Cell {self.cell} is running"
        with VerticalScroll(id="stop-box", classes="dialog"):
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop", variant="error", id="stop-yes")
                yield Button("Detach", variant="primary", id="stop-detach")
                yield Button("Cancel", id="stop-cancel")
            yield Label(f"{which}. Stop the session?", classes="dialog-title")
            yield Label("Stopping ends the cell and the kernel: its variables are lost. Detaching "
                        "leaves both running on the target (`devloop attach` comes back).",
                        classes="dialog-text")
            yield Label("[y] stop   [d] detach instead   [esc] cancel", classes="dialog-keys",
                        markup=False)

    def on_mount(self) -> None:
        self.query_one("#stop-cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose({"stop-yes": "stop", "stop-detach": "detach"}.get(event.button.id or "", ""))

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice or None)
