"""`devloop up`: the full-screen app, a thin layer over the engine's events.

Every change on screen comes from one path: the app's `emit`, subscribed to the session host
(`devloop.core.host`, which owns the Session and fans its events out), puts core events in an
inbox, one `EventsPending` message drains it through `handle_event`, and `handle_event` updates
the widgets. Tests feed fixed event sequences through the same path (no target, no clock); the
real `Session` runs in workers on the app's event loop, so `emit` is called on that loop too.

Output is the hot path: a chunk is split into per-cell ring buffers (bounded by
`[ui].scrollback`) and the log widget is told about new lines on a ~40 ms timer, rendering only
the rows on screen. A drain handles at most `DRAIN_BUDGET` events before yielding, so a key
press waits for one batch at most.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Input
from textual.worker import Worker, WorkerState

from devloop.core import events as ev
from devloop.core.host import SessionHost
from devloop.core.units import plural
from devloop.ui.logstore import DEVLOOP, LogLine, LogStore, Ring
from devloop.ui.messages import EventsPending
from devloop.ui.widgets.cells import CellRow, CellsPanel, format_ms
from devloop.ui.widgets.footer import KeysFooter
from devloop.ui.widgets.dialogs import ProfilePicker, PromoteDialog, PromoteRequest, StopConfirm
from devloop.ui.widgets.help import HelpScreen
from devloop.ui.widgets.gpu import GpuPanel
from devloop.ui.widgets.image import FigureLog
from devloop.ui.widgets.image import prepare as prepare_images
from devloop.ui.widgets.metrics import MetricsPanel
from devloop.ui.widgets.header import HeaderBar
from devloop.ui.widgets.input_box import InputBox
from devloop.ui.widgets.logview import LogView
from devloop.ui.widgets.syncline import SyncLine
from devloop.ui.widgets.ports import PortsLine

STOP_GRACE = 2.0  # seconds the session worker gets to end by itself on quit / profile switch
FLUSH_INTERVAL = 0.04  # seconds between log repaints while output streams
ELAPSED_TICK = 0.5  # seconds between updates of the running cell's time
DRAIN_DELAY = 0.005  # seconds events wait to be drained together
DRAIN_BUDGET = 5000  # events handled per drain before other messages (keys) get a turn
SEARCH_LIMIT = 50_000  # matching lines kept for a search view

HostFactory = Callable[[str], SessionHost]
"""profile name -> a session host for that profile (its Session not created yet)."""

SessionFactory = Callable[[str, ev.Emit], Any]
"""(profile name, emit) -> a Session (or a stand-in); the app puts it in a host. For callers that
wrap the Session's emit themselves (tests, benchmarks)."""

ACTIONS = (
    # key, action, footer label, palette help (also the help screen's text: `?`). The footer shows
    # the keys in FOOTER_KEYS (narrow) or FOOTER_KEYS_WIDE; `?` lists them all.
    ("question_mark", "help", "Keys", "Show every key and what it does"),
    ("r", "rerun", "Rerun", "Rerun the selected cell and the cells that depend on it"),
    ("a", "run_all", "Run all", "Run every code cell (or the script)"),
    ("i", "interrupt", "Interrupt", "Interrupt the running cell; the kernel keeps its state"),
    ("s", "sync", "Sync", "Sync the project to the target now"),
    ("w", "toggle_watch", "Watch", "Turn rerun-on-save on or off"),
    ("d", "detach", "Detach", "Leave the app; the session (kernel, variables, a running cell, the "
                              "container or pod) keeps running on the target: `devloop attach` "
                              "comes back, `devloop stop` ends it"),
    ("q", "quit", "Quit", "Stop the session (kernel, container or pod) and quit; asks first "
                          "while a cell runs"),
    ("k", "restart_kernel", "Restart", "Restart the kernel (fresh namespace)"),
    ("p", "promote", "Promote", "Promote the working setup to a pipeline"),
    ("t", "switch_profile", "Profile", "Switch to another profile (restarts the target)"),
    ("f", "filter_cell", "Filter", "Show only the selected cell's log (again: all cells)"),
    ("slash", "search", "Search", "Search the log"),
    ("l", "toggle_wrap", "Wrap", "Wrap long output lines (again: one row per line, scroll sideways; "
                                 "devloop's own messages always wrap)"),
    ("o", "open_port", "Open", "Open a forwarded port (--forward, [ports]) in the browser; "
                               "again: the next one"),
)
# The keys the footer shows: at 80 columns these and `^p palette` fit; the rest are in `?`.
FOOTER_KEYS = ("question_mark", "r", "a", "i", "d", "q")
FOOTER_KEYS_WIDE = FOOTER_KEYS + ("s", "w", "k", "p", "t", "f", "slash", "l")  # as room allows
EXTRA_KEYS = (  # keys that are not actions of their own, for the help screen
    ("enter", "On a failed cell: show its log at the traceback"),
    ("up/down", "Select a cell (in the cells panel); scroll (in the log)"),
    ("tab", "Move between the cells panel and the log"),
    ("end", "Follow the newest output again (after scrolling the log up)"),
    ("home", "In the log: go to the oldest line kept"),
    ("escape", "Clear the search; close a dialog"),
    ("ctrl+p", "The command palette: every action by name"),
)

REPLAY_MARK = {  # the dim line before output the target kept and replayed once
    "detached": "(while detached: replayed from the target)",
    "link": "(while the link was down: replayed from the target)",
}


def project_name(config: Any) -> str:
    project = getattr(config, "project", None)
    name = getattr(project, "name", "") if project is not None else ""
    if not name and getattr(config, "root", None) is not None:
        name = Path(config.root).name
    return name or "devloop"


def profile_names(config: Any, current: str) -> list[str]:
    names = []
    getter = getattr(config, "profile_names", None)
    if callable(getter):
        names = list(getter())
    if current and current not in names:
        names.insert(0, current)
    return names


def scrollback_of(config: Any, default: int = 10_000) -> int:
    ui = getattr(config, "ui", None)
    return int(getattr(ui, "scrollback", default) or default)


class DevloopApp(FigureLog, App[int]):
    """The `devloop up` screen. Without a host (or session) factory it only renders fed events."""

    CSS_PATH = Path(__file__).with_name("devloop.tcss")
    TITLE = "devloop"
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]  # -short: dialogs drop their margins
    BINDINGS = [
        *(Binding(key, action, label, tooltip=help_, show=key in FOOTER_KEYS_WIDE)
          for key, action, label, help_ in ACTIONS),
        Binding("escape", "clear_search", "Clear search", show=False),
        Binding("enter", "open_figure", "Open the figure", show=False),  # the log focused: image.py
        # End follows the log again from anywhere (the cells panel has the focus most of the
        # time; End there only scrolled the table sideways)
        Binding("end", "follow_log", "Follow the log", show=False, priority=True),
        # ctrl+c is q: it stops, asking first while a cell runs (pressed again, it stops).
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        *,
        config: Any = None,
        profile: str = "local",
        file: Path | str | None = None,
        host_factory: HostFactory | None = None,
        session_factory: SessionFactory | None = None,
        promote: Callable[..., Any] | None = None,
        promote_targets: Iterable[str] = ("argo", "github"),
        promote_cite: Callable[[Any, str], str] | None = None,
        scrollback: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self.config = config
        self.profile_name = profile
        self.file = str(file) if file else ""
        if host_factory is None and session_factory is not None:
            host_factory = _host_factory(session_factory)
        self.host_factory = host_factory
        self.promote_fn = promote
        self.promote_targets = list(promote_targets)
        self.promote_cite = promote_cite  # (config, profile) -> the run a promote would cite, one line
        self.verbose = verbose
        self.store = LogStore(scrollback if scrollback is not None else scrollback_of(config))
        self.host: SessionHost | None = None
        self.watching = True
        self.cell_states: dict[int, str] = {}
        self.tracebacks: dict[int, list[LogLine]] = {}
        self.filter_cell: int | None = None
        self.filter_rank: int | None = None  # [run] launcher: only lines tagged [rN] (f cycles)
        self.search_query = ""
        self._search_results: Ring | None = None
        self._interrupted: set[int] = set()  # cells a KeyboardInterrupt ended: "interrupted", not "failed"
        self._inbox: deque[ev.Event] = deque()
        self._drain_posted = False
        self._log_dirty = False
        self._partial_seen = 0  # the store's partial_version last drawn
        self._running_since: tuple[int, float] | None = None  # (cell, monotonic start), live runs only
        self._watch_stop: asyncio.Event | None = None
        self._session_worker: Worker | None = None
        self._quitting = False
        self.exit_code = 0
        self.exit_message = ""  # printed after the app exits (how to come back to a detached session)
        self._detached_message = ""  # the session's word that it was left running
        self._gap = "detached"  # what replayed output missed: "detached" (attach) or "link" (a drop)
        self._replay_run: tuple[int, str] | None = None  # (cell, gap) of the replay being shown
        ui = getattr(config, "ui", None)
        self.images_mode = str(getattr(ui, "images", "auto") or "auto")  # [ui] images
        prepare_images(self.images_mode)  # textual-image asks the terminal: before Textual runs
        self._figures: dict[int, Path] = {}  # log line seq -> the figure it shows (enter / click)
        self.metric_names = tuple(getattr(ui, "metrics", ()) or ())  # [ui] metrics

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(project=project_name(self.config), profile=self.profile_name,
                        file=self.file, id="header")
        with Horizontal(id="main"):
            with Vertical(id="side"):
                yield CellsPanel(id="cells")
                yield GpuPanel(id="gpu")
                yield MetricsPanel(self.metric_names, id="metrics")  # shown once a metric has a value
            with Vertical(id="logpane"):
                yield LogView(id="log")
                yield Input(placeholder="search the log (enter: apply, esc: clear)", id="search")
        yield PortsLine(lambda: self.session, id="ports")  # hidden while nothing is forwarded
        yield SyncLine(id="syncline")
        yield KeysFooter(FOOTER_KEYS, compact=True)

    def on_mount(self) -> None:
        self.query_one("#search", Input).cursor_blink = False
        self.cells_panel.border_title = "cells"
        self.log_view.border_title = "log"
        self.gpu_panel.border_title = "GPU"
        self.log_view.show(self.store.all, max_width=self.store.max_width)
        self.set_interval(FLUSH_INTERVAL, self.flush_log)
        self.set_interval(ELAPSED_TICK, self._tick_elapsed)
        self.cells_panel.focus()
        if self.host_factory is not None:
            self.start_session(self.profile_name)

    @property
    def session(self) -> Any:
        """The running Session (None when none is): the host's, while the app holds a host."""
        return self.host.session if self.host is not None else None

    @property
    def cells_panel(self) -> CellsPanel:
        return self.query_one("#cells", CellsPanel)

    @property
    def log_view(self) -> LogView:
        return self.query_one("#log", LogView)

    @property
    def gpu_panel(self) -> GpuPanel:
        return self.query_one("#gpu", GpuPanel)

    @property
    def sync_line(self) -> SyncLine:
        return self.query_one("#syncline", SyncLine)

    @property
    def header_bar(self) -> HeaderBar:
        return self.query_one("#header", HeaderBar)

    # -- the one way events come in ------------------------------------------------------------

    def emit(self, event: ev.Event) -> None:
        """The session's `emit`: queue the event; one message drains the queue."""
        self._inbox.append(event)
        if not self._drain_posted:
            self._drain_posted = True
            # Events arriving within DRAIN_DELAY share one drain: a cell printing line by line
            # costs one message per few milliseconds, not one per line.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # another thread: hand over to the app's loop
                self.call_from_thread(self._schedule_drain)
            else:
                loop.call_later(DRAIN_DELAY, self.post_message, EventsPending())

    def _schedule_drain(self) -> None:
        asyncio.get_running_loop().call_later(DRAIN_DELAY, self.post_message, EventsPending())

    def feed(self, events: Iterable[ev.Event]) -> None:
        """Handle events now (tests and snapshots), then repaint the log."""
        for event in events:
            self.handle_event(event)
        self.flush_log()

    def on_events_pending(self, message: EventsPending) -> None:
        self._drain_posted = False
        inbox, handle = self._inbox, self.handle_event
        for _ in range(min(len(inbox), DRAIN_BUDGET)):
            handle(inbox.popleft())
        if inbox:
            self._drain_posted = True
            self.post_message(EventsPending())

    def handle_event(self, event: ev.Event) -> None:
        """Render one core event."""
        if isinstance(event, ev.Output):
            if event.replayed:
                self._mark_replay(event.cell)
            elif self._replay_run is not None:
                self._replay_run = None
            added = self.store.add_output(event.cell, event.stream, event.text)
            if added:
                self._note_new_lines(event.cell, added)
            return
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _mark_replay(self, cell: int) -> None:
        """One dim marker line before a run of replayed output (per cell and per gap), not a mark
        on every line: what follows it arrived on the target while this app was not there."""
        gap = self._gap
        if self._replay_run == (cell, gap):
            return
        self._replay_run = (cell, gap)
        self._log_line(REPLAY_MARK[gap], cell=cell, stream="replay")

    def _note_new_lines(self, cell: int, count: int) -> None:
        self._log_dirty = True
        if self._search_results is not None:
            ring = self.store.ring(cell)
            if self.filter_cell is None or self.filter_cell == cell:
                for index in range(len(ring) - min(count, len(ring)), len(ring)):
                    if self._shown(ring[index]):
                        self._search_results.append(ring[index])

    def _shown(self, line: LogLine) -> bool:
        """Whether a line passes the search (/) and the rank filter (f under a launcher)."""
        if self.search_query and self.search_query.lower() not in line.text.lower():
            return False
        return self.filter_rank is None or line.text.startswith(f"[r{self.filter_rank}] ")

    def _log_line(self, text: str, *, cell: int = DEVLOOP, stream: str = "info") -> list[LogLine]:
        lines = self.store.add_lines(cell, stream, text)
        self._note_new_lines(cell, len(lines))
        return lines

    def flush_log(self) -> None:
        """Repaint the log if lines arrived since the last flush (the ~40 ms timer), with the
        unfinished lines (a progress bar redrawn with \r) live at the bottom."""
        if self.store.partial_version != self._partial_seen:
            self._partial_seen = self.store.partial_version
            self.log_view.set_tail([] if self._search_results is not None
                                   else self.store.partial_lines(self.filter_cell))
            self._log_dirty = True
        if self._log_dirty:
            self._log_dirty = False
            self.log_view.sync(self.store.max_width)

    def _tick_elapsed(self) -> None:
        """The running cell's time, counting (only with a live session: snapshots have no clock)."""
        if self.session is None or self._running_since is None:
            return
        cell, started = self._running_since
        self.cells_panel.set_time(cell, (time.monotonic() - started) * 1000, running=True)

    # -- per-event rendering -------------------------------------------------------------------

    def _on_FileParsed(self, event: ev.FileParsed) -> None:
        rows = [CellRow(int(c.get("cell", i)), str(c.get("title") or f"cell {i}"), int(c.get("line", 0)),
                        state=self.cell_states.get(int(c.get("cell", i)), "pending"))
                for i, c in enumerate(event.cells)]
        if event.is_script and not rows:
            rows = [CellRow(0, "(script)", 1, state=self.cell_states.get(0, "pending"))]
        self.cells_panel.set_cells(rows)
        self.store.set_cell_count(len(rows))
        if event.file:
            self.header_bar.set_file(event.file)

    def _on_CellState(self, event: ev.CellState) -> None:
        state = event.state
        if state == "failed" and event.cell in self._interrupted:
            state = "interrupted"  # stopped by the user (i), not an error in the code
        elif state in ("running", "pending", "ok"):
            self._interrupted.discard(event.cell)
        self.cell_states[event.cell] = state
        self.cells_panel.set_state(event.cell, state)

    def _on_CellsPlanned(self, event: ev.CellsPlanned) -> None:
        cells = ", ".join(str(c) for c in event.cells) or "none"
        reason = f" ({event.reason})" if event.reason else ""
        self.sync_line.set_status(Text(f"plan: cells {cells}{reason}", style="cyan"))

    def _on_CellStart(self, event: ev.CellStart) -> None:
        self.cell_states[event.cell] = "running"
        self.cells_panel.set_state(event.cell, "running")
        self.tracebacks.pop(event.cell, None)
        self._metrics_cell_started(event.cell)
        self._replay_run = None
        title = f" {event.title}" if event.title else ""
        self._running_since = (event.cell, time.monotonic())
        self._log_line(f"── cell {event.cell}{title} (line {event.line}) ──", cell=event.cell)
        self.sync_line.set_status(Text(f"running cell {event.cell}", style="yellow"))

    def _on_InputRequest(self, event: ev.InputRequest) -> None:
        InputBox.ask(self, event, lambda n, text: self._session_call(
            "input", lambda s: s.answer_input(n, text, "" if text is not None else "the input box was closed (esc)"),
            "control"))

    def _on_CellDone(self, event: ev.CellDone) -> None:
        InputBox.close(self, event.cell)
        self._running_since = None
        self.store.finish_cell(event.cell)
        self._log_dirty = True
        self.cells_panel.set_time(event.cell, event.ms)
        if self.cell_states.get(event.cell) in (None, "running", "pending"):
            state = "ok" if event.ok else "interrupted" if event.cell in self._interrupted else "failed"
            self.cell_states[event.cell] = state
            self.cells_panel.set_state(event.cell, state)

    def _on_CellError(self, event: ev.CellError) -> None:
        self.store.finish_cell(event.cell)
        where = f"{event.file}:{event.line}" if event.file else ""
        text = event.traceback.rstrip("\n") or f"{event.type}: {event.message}"
        lines = self._log_line(f"{text}\n{event.type}: {event.message}  at {where}" if where and
                          event.message not in text else text, cell=event.cell, stream="traceback")
        self.tracebacks[event.cell] = lines
        state = "failed"
        if event.type == "KeyboardInterrupt":
            self._interrupted.add(event.cell)
            state = "interrupted"
        self.cell_states[event.cell] = state
        self.cells_panel.set_state(event.cell, state)

    def _on_RunDone(self, event: ev.RunDone) -> None:
        self._running_since = None
        took = format_ms(event.ms)
        if event.ok and event.cells_run == 0:  # attached: every cell up to date in the session
            status = Text("✓ up to date · nothing reran", style="green")
        elif event.ok:
            status = Text(f"✓ run ok · {plural(event.cells_run, 'cell')} · {took}", style="green")
        elif any(state == "interrupted" for state in self.cell_states.values()):
            cells = ", ".join(str(c) for c, state in sorted(self.cell_states.items()) if state == "interrupted")
            status = Text(f"■ interrupted · cell {cells} · {took} · the kernel kept its state",
                          style="bold yellow")
        else:
            status = Text(f"✗ run failed (exit {event.exit_code}) · {plural(event.cells_run, 'cell')} · {took}"
                          " · enter: traceback", style="bold red")
        self.sync_line.set_status(status)

    def _on_SyncProgress(self, event: ev.SyncProgress) -> None:
        self.sync_line.set_progress(event.files_done, event.files_total, event.bytes_done,
                                    event.bytes_total)

    def _on_PortForward(self, event: ev.PortForward) -> None:
        self.query_one("#ports", PortsLine).on_forward(event)

    def action_open_port(self) -> None:
        url = self.query_one("#ports", PortsLine).open_next()
        self.notify(f"opening {url}" if url else "no port is forwarded -- `--forward 6006` or "
                    "[ports] forward in devloop.toml", timeout=3)

    def _on_SyncDone(self, event: ev.SyncDone) -> None:
        self.sync_line.set_sync(event.files, event.bytes, event.deleted, event.ms)
        if event.dependencies_changed:
            self._log_line("dependencies changed: " + ", ".join(event.dependencies_changed)
                      + " (the profile's setup ran)")

    def _on_TargetState(self, event: ev.TargetState) -> None:
        if event.profile:
            self.profile_name = event.profile
        previous = self.header_bar.state
        shown = "" if event.state == "attached" else event.message  # the badge says it, shorter
        if event.state == "ready" and not getattr(getattr(self.session, "target", None), "needs_sync", True):
            self.sync_line.set_in_place()  # nothing is ever synced: not "no sync yet"
        self.header_bar.set_target(event.state, shown, event.profile, event.kind)
        if event.state == "attached":
            # the Session says "ready" right after: the header keeps the session's badge
            self.header_bar.set_session(_attached_badge(event.message))
            self._log_line(event.message or "attached to the running session")
        elif event.state == "reconnecting":
            self._gap, self._replay_run = "link", None
            self.header_bar.set_session("kernel kept")  # the link dropped, not the kernel
            if previous != "reconnecting" or not event.message.startswith("reattaching"):
                self._log_line(f"target reconnecting: {event.message}".rstrip(": "))
        elif event.state == "ready" and previous == "reconnecting":
            self.header_bar.set_session("reattached" if event.message.startswith("reattached")
                                        else "reconnected")
            self._log_line(f"target ready: {event.message}".rstrip(": "))
        elif event.state == "detached":
            self._detached_message = event.message or "detached: the session keeps running on the target"
            self.header_bar.set_session("")
            self._log_line(self._detached_message)
        elif event.state in ("kernel_died", "failed", "error"):
            self.header_bar.set_session("")
            self._log_line(f"target {event.state}: {event.message}".rstrip(": "), stream="stderr")

    def _on_KernelReady(self, event: ev.KernelReady) -> None:
        self.header_bar.set_kernel(event.python, event.pid)

    def _on_GpuSample(self, event: ev.GpuSample) -> None:
        self.gpu_panel.show_sample(event.available, tuple(event.gpus), event.reason)

    def _on_GpuSummary(self, event: ev.GpuSummary) -> None:
        for gpu in event.gpus:
            parts = [f"{k}={v}" for k, v in gpu.items() if k != "index"]
            self._log_line(f"GPU{gpu.get('index', '?')} summary: " + " ".join(parts))

    def _on_Diagnostic(self, event: ev.Diagnostic) -> None:
        if event.level == "warning" or self.verbose >= (2 if event.level == "debug" else 1):
            self._log_line(f"{event.level}: {event.message}",
                      stream="stderr" if event.level == "warning" else "info")

    # -- the session, in workers ---------------------------------------------------------------

    def start_session(self, profile: str) -> None:
        """Start the session on `profile` in a worker (first pass + watch)."""
        self._session_worker = self.run_worker(self._session_main(profile), name=f"session {profile}",
                                               group="session", exit_on_error=False)

    async def _session_main(self, profile: str) -> None:
        """Start the target, run all, and watch -- until the watch is stopped or this is cancelled."""
        self.profile_name = profile
        self.header_bar.set_target("starting", "", profile)
        self.header_bar.set_session("")
        self._gap, self._replay_run, self._detached_message = "detached", None, ""
        first: asyncio.Task | None = None
        self._watch_stop = stop = asyncio.Event()
        started = False
        try:
            # a profile that cannot even be set up (a refused workdir, a missing file) fails
            # here: said on screen like a target that does not start
            host = self.host = self.host_factory(profile)
            host.subscribe(self.emit)
            session = host.create()
            session.answers_input = True  # a cell's input() opens the input box (widgets/input_box.py)
            _set_watching(session, self.watching)
            await host.start()
            started = True
            # The first pass and the watcher run together: a save during the pass counts. Attached
            # to a live session, the first pass reruns only what changed or is not ok there.
            first_pass = getattr(session, "first_pass", None) or session.run_all
            first = asyncio.create_task(first_pass())
            first.add_done_callback(self._first_pass_done)
            await session.watch(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the target failed to start: say so on screen, keep the app
            self.handle_event(ev.TargetState("failed", _one_line(exc), profile))  # logs it too
            rest = [line.strip() for line in str(exc).strip().splitlines()[1:]]
            if rest:  # the fix hint below a target's message: shown, not cut
                self._log_line("\n".join(rest), stream="stderr")
            if started:
                self._log_line(f"the session on {profile!r} stopped: {exc}", stream="stderr")
            what = "stopped" if started else "did not start"
            self.sync_line.set_status(Text(f"✗ profile {profile!r} {what}: see the log · t: profiles",
                                           style="bold red"))
            self.flush_log()
        finally:
            if first is not None and not first.done():
                first.cancel()

    async def _stop_session(self, *, detach: bool = False) -> None:
        """Stop watching, let the session worker end (cancel it if it hangs), close the target
        -- or, with `detach`, leave the session running there (a cancelled pass only stops
        waiting here: its running cell goes on in the session kernel).

        The watcher is told to stop before anything is cancelled: watchfiles waits in a thread
        that a cancel alone does not end promptly.
        """
        if self._watch_stop is not None:
            self._watch_stop.set()
        worker = self._session_worker
        if worker is not None and not worker.is_finished:
            try:
                await asyncio.wait_for(asyncio.shield(worker.wait()), STOP_GRACE)
            except Exception:  # still running (a pass in progress): cancel it
                worker.cancel()
                try:
                    await asyncio.wait_for(worker.wait(), STOP_GRACE)
                except Exception:
                    pass
        self._session_worker = None
        await self._close_session(detach=detach)

    def _first_pass_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._log_line(f"run all failed: {_one_line(exc)}", stream="stderr")
            self.flush_log()

    async def _close_session(self, *, detach: bool = False) -> None:
        host, self.host = self.host, None
        if self._watch_stop is not None:
            self._watch_stop.set()
        if host is not None:
            try:
                await (host.detach() if detach else host.close())
            except Exception as exc:  # cleanup failed: tell, but keep going
                what = "detaching from the session" if detach else "closing the target"
                self._log_line(f"{what} failed: {_one_line(exc)}", stream="stderr")

    def _session_call(self, label: str, call: Callable[[Any], Awaitable[Any]], group: str,
                      done: Callable[[Any], None] | None = None) -> None:
        """Run `call(session)` in a worker; failures land in the log, never kill the app.
        `done(result)` runs after it succeeded."""
        session = self.session
        if session is None:
            self.sync_line.set_status(Text(f"{label}: no session running", style="yellow"))
            return

        async def runner() -> None:
            try:
                result = await call(session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log_line(f"{label} failed: {_one_line(exc)}", stream="stderr")
                self.flush_log()
            else:
                if done is not None:
                    done(result)

        self.run_worker(runner(), name=label, group=group, exit_on_error=False)

    # -- actions (keys and command palette) ----------------------------------------------------

    def action_rerun(self) -> None:
        cell = self.cells_panel.selected_cell
        if cell is None:
            self.sync_line.set_status(Text("no cell selected", style="yellow"))
            return
        self._session_call(f"rerun cell {cell}", lambda s: s.rerun_cell(cell), "run")

    def action_run_all(self) -> None:
        self._session_call("run all", lambda s: s.run_all(), "run")

    def action_interrupt(self) -> None:
        if self.session is None:
            self.sync_line.set_status(Text("interrupt: no session running", style="yellow"))
            return
        cell = self.running_cell
        if cell is None:
            self.sync_line.set_status(Text("nothing is running: i interrupts a running cell", style="yellow"))
            return
        self.sync_line.set_status(Text(f"interrupting cell {cell} (the kernel keeps its state)",
                                       style="yellow"))
        self._session_call("interrupt", lambda s: s.interrupt(), "control")

    def action_restart_kernel(self) -> None:
        if self.session is None:
            self.sync_line.set_status(Text("restart kernel: no session running", style="yellow"))
            return
        self.sync_line.set_status(Text("restarting the kernel…", style="yellow"))
        self._session_call("restart kernel", lambda s: s.restart_kernel(), "control",
                           done=lambda _: self._kernel_restarted())

    def _kernel_restarted(self) -> None:
        self._log_line("kernel restarted: a fresh Python process, so every variable and import of "
                       "the earlier runs is gone and every cell is stale; a runs them all again, "
                       "r reruns the selected cell")
        self.sync_line.set_status(Text("kernel restarted · every cell stale · a: run all",
                                       style="yellow"))
        self.flush_log()

    def action_sync(self) -> None:
        session = self.session
        target = getattr(session, "target", None)
        if session is not None and target is not None and not getattr(target, "needs_sync", True):
            self.sync_line.set_status(Text(
                f"nothing to sync: {self.profile_name!r} runs in place, on your files", style="cyan"))
            return
        self._session_call("sync", lambda s: s.sync_now(), "control")

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.key_help()))

    def key_help(self) -> list[tuple[str, str]]:
        """Every key with what it does: the actions, the keys that are not actions of their own,
        then any other binding the app has (with its tooltip or description)."""
        rows, seen = [], set()
        for key, action, _label, help_ in ACTIONS:
            rows.append((_key_name(key), help_))
            seen.add(action)
        rows.extend(EXTRA_KEYS)
        seen.update({"clear_search", "follow_log", "quit", "help", "command_palette"})
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.action not in seen:
                seen.add(binding.action)
                rows.append((_key_name(binding.key), binding.tooltip or binding.description))
        rows.append(("ctrl+c", "Same as q"))
        return rows

    def action_toggle_wrap(self) -> None:
        wrap = not self.log_view.wrap
        self.log_view.set_wrap(wrap)
        self.sync_line.set_status(Text("log: long lines wrap" if wrap else
                                       "log: one row per line (scroll sideways; l: wrap)", style="cyan"))

    def action_follow_log(self) -> None:
        self.log_view.action_scroll_end()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "follow_log":  # End, from anywhere but a text box or a dialog
            return not isinstance(self.focused, Input) and self.screen is self.screen_stack[0]
        return True

    def action_toggle_watch(self) -> None:
        self.watching = not self.watching
        if self.session is not None:
            _set_watching(self.session, self.watching)
        self.sync_line.set_watch(self.watching)

    def action_filter_cell(self) -> None:
        if getattr(self.config.run, "launcher", None):  # a script as N ranks: f cycles them
            from devloop.core.launcher import rank_of

            ranks = sorted({r for r in (rank_of(line.text) for line in self.store.all.lines)
                            if r is not None})
            if ranks:
                later = [r for r in ranks if self.filter_rank is None or r > self.filter_rank]
                self.filter_rank = later[0] if later else None
                self._show_log()
                return
        if self.filter_cell is None:
            cell = self.cells_panel.selected_cell
            if cell is None:
                return
            self.filter_cell = cell
        else:
            self.filter_cell = None
        self._show_log()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("-visible")
        search.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.search_query = event.value.strip()
        self._show_log()
        self.log_view.focus()

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        search.remove_class("-visible")
        self.search_query = ""
        self._show_log()
        self.cells_panel.focus()

    def _show_log(self, *, keep_marks: bool = False) -> None:
        base = self.store.all if self.filter_cell is None else self.store.ring(self.filter_cell)
        if not keep_marks:
            self.log_view.marked = set()
        view = "log: all cells" if self.filter_cell is None else f"log: cell {self.filter_cell}"
        if self.filter_rank is not None:
            view += f" · rank r{self.filter_rank}"
        if self.search_query or self.filter_rank is not None:
            self._search_results = Ring(SEARCH_LIMIT)
            for line in base.lines:
                if self._shown(line):
                    self._search_results.append(line)
            self.log_view.show(self._search_results, max_width=self.store.max_width,
                               search=self.search_query)
            if self.search_query:
                view += f" · /{self.search_query}: {plural(len(self._search_results), 'line')}"
        else:
            self._search_results = None
            self.log_view.show(base, max_width=self.store.max_width)
        self.sync_line.set_view(view)

    @on(DataTable.RowSelected, "#cells")
    def _cell_chosen(self, event: DataTable.RowSelected) -> None:
        """Enter on a failed cell: show that cell's log at its traceback."""
        cell = int(event.row_key.value)
        lines = self.tracebacks.get(cell)
        if self.cell_states.get(cell) != "failed" or not lines:
            return
        self.search_query = ""
        self.query_one("#search", Input).remove_class("-visible")
        self.filter_cell = cell
        self._show_log()
        self.log_view.mark({line.seq for line in lines})
        self.log_view.jump_to(lines[0])

    def action_promote(self) -> None:
        note = "" if self.promote_fn is not None else "promote is unavailable in this build"
        name = project_name(self.config).lower().replace("_", "-")
        cited = self.promote_cite(self.config, self.profile_name) if self.promote_cite and not note else ""
        self.push_screen(PromoteDialog(self.promote_targets, name, note, cited=cited), self._promote_chosen)

    def _promote_chosen(self, request: PromoteRequest | None) -> None:
        if request is None:
            return
        if self.promote_fn is None:
            self._log_line("promote is unavailable: this app was started without it", stream="stderr")
            self.flush_log()
            return
        self._promote(request)

    @work(group="promote", exclusive=True, exit_on_error=False)
    async def _promote(self, request: PromoteRequest) -> None:
        self._log_line(f"promoting to {request.target} as {request.name!r}"
                  + (" and committing" if request.commit else ""))
        args = (self.config, self.profile_name, request.target, request.name, None, request.commit,
                request.allow_dirty, request.allow_unpinned)
        try:
            if inspect.iscoroutinefunction(self.promote_fn):
                result = await self.promote_fn(*args)
            else:  # git and the image lookups block: keep them off the event loop
                result = await asyncio.to_thread(self.promote_fn, *args)
        except Exception as exc:
            text = _one_line(exc)
            for flag, box in (("--allow-dirty", "Allow uncommitted changes"),
                              ("--allow-unpinned", "Allow an image without a registry digest")):
                if flag in text:
                    text += f" (in this dialog: tick '{box}')"
            self._log_line(f"promote failed: {text}", stream="stderr")
        else:
            self._log_line(_promoted_text(result))
            for warning in getattr(result, "warnings", ()) or ():
                self._log_line(f"promote warning: {warning}", stream="stderr")
        self.flush_log()

    def action_switch_profile(self) -> None:
        names = profile_names(self.config, self.profile_name)
        self.push_screen(ProfilePicker(names, self.profile_name), self._profile_chosen)

    def _profile_chosen(self, profile: str | None) -> None:
        if profile is None or profile == self.profile_name and self.session is not None:
            return
        self.header_bar.set_target("stopping", f"switching to {profile}")
        self._clear_screen_state()
        if self.host_factory is None:
            self.profile_name = profile
            self.header_bar.set_target("stopped", "", profile)
            return
        self._switch(profile)

    def _clear_screen_state(self) -> None:
        """Nothing of the old profile stays on screen: cells, their states, the log and its
        figures, the GPU gauges, the metric chart, the forwarded ports, the kernel, the last sync
        and the run status."""
        self.cell_states.clear()
        self.tracebacks.clear()
        self._interrupted.clear()
        self._running_since = None
        self.store.clear()
        self.filter_cell = None
        self._show_log()
        self.cells_panel.set_cells([])
        self.gpu_panel.reset()
        self._clear_figures()
        for panel in self.query(MetricsPanel):
            panel.reset()
        self.query_one("#ports", PortsLine).reset()
        self.header_bar.set_kernel("", 0)
        self.header_bar.kind = ""  # the next profile's kind comes with its first target event
        self.header_bar.set_session("")
        self.sync_line.reset()

    @work(group="switch", exclusive=True, exit_on_error=False)
    async def _switch(self, profile: str) -> None:
        await self._stop_session()
        # the old session's last words (its "stopped", a GPU sample) are not the new profile's
        self._inbox.clear()
        self._clear_screen_state()
        self.start_session(profile)

    @property
    def running_cell(self) -> int | None:
        """The cell running now (also one a previous front end started and this one inherited):
        the Session's word when there is one (the screen's states lag behind its events), else
        what the screen shows (a stand-in session, fed events)."""
        from devloop.core.session import Session  # loaded already when a real session runs

        session = self.session
        if isinstance(session, Session):
            return session.running_cell
        return next((cell for cell, state in self.cell_states.items() if state == "running"), None)

    async def action_quit(self) -> None:
        """q / ctrl+c: stop the session (kernel, target cleaned up) and quit. While a cell runs,
        ask first (stop, detach instead, cancel); q or ctrl+c again while asked means stop."""
        if self._quitting:
            return
        if isinstance(self.screen, StopConfirm):
            self.screen.dismiss("stop")
            return
        running = self.running_cell
        if running is not None and self.session is not None:
            self.push_screen(StopConfirm(running), self._stop_chosen)
            return
        await self._stop_and_exit()

    def _stop_chosen(self, choice: str | None) -> None:
        if choice == "stop":
            self.run_worker(self._stop_and_exit(), group="exit", exclusive=True)
        elif choice == "detach":
            self.run_worker(self.action_detach(), group="exit", exclusive=True)

    async def _stop_and_exit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        self.header_bar.set_target("stopping", "cleaning up the target")
        await self._stop_session()
        self.exit(self.exit_code)

    async def action_detach(self) -> None:
        """d: leave the app; the session (kernel, its variables, a running cell, the container
        or pod) keeps running on the target. The line printed after exit says how to come back
        (`devloop attach -p P`) and how to end it (`devloop stop -p P`)."""
        if self._quitting:
            return
        if isinstance(self.screen, StopConfirm):
            self.screen.dismiss("detach")
            return
        self._quitting = True
        profile = self.profile_name
        self.header_bar.set_target("detaching", "the session keeps running on the target")
        had_session = self.host is not None and self.session is not None
        await self._stop_session(detach=True)
        while self._inbox:  # the session's last events (its "detached") before the app goes
            self.handle_event(self._inbox.popleft())
        if self._detached_message:
            self.exit_message = (
                f"devloop: detached; the session on profile {profile!r} keeps running on the target.\n"
                f"  come back:  devloop attach -p {profile}\n"
                f"  end it:     devloop stop -p {profile}")
        elif had_session:  # a plain kernel (or a session that had ended) cannot be left running
            self.exit_message = (f"devloop: no session was left running on profile {profile!r} (no session "
                                 "kernel was running), so the target was stopped")
        self.exit(self.exit_code, message=Text(self.exit_message) if self.exit_message else None)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title == "Keys":  # Textual's generic panel: `?` lists this app's keys
                continue
            yield command
        for key, action, label, help_ in ACTIONS:
            if action == "quit":  # Textual's own "Quit" command runs action_quit
                continue
            yield SystemCommand(f"{label} ({_key_name(key)})", help_, getattr(self, f"action_{action}"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self._log_line(f"{event.worker.name} failed: {_one_line(event.worker.error)}", stream="stderr")
            self.flush_log()


def _host_factory(session_factory: SessionFactory) -> HostFactory:
    """A host factory over a (profile, emit) -> Session factory."""
    return lambda profile: SessionHost(lambda emit: session_factory(profile, emit))


def _set_watching(session: Any, on: bool) -> None:
    """Session.set_watching also runs the saves remembered while watch was off."""
    setter = getattr(session, "set_watching", None)
    if callable(setter):
        setter(on)
    else:
        session.watching = on


def _attached_badge(message: str) -> str:
    """`attached · 2/3 kept` from the Session's "attached to ...: 2 of 3 cells' state kept"."""
    match = re.search(r"(\d+) of (\d+) cells", message)
    return f"attached · {match[1]}/{match[2]} kept" if match else "attached"


def _key_name(key: str) -> str:
    return {"question_mark": "?", "slash": "/"}.get(key, key)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _promoted_text(result: Any) -> str:
    """One line for the log: the file written, the run id, and the commit when there is one."""
    path = getattr(result, "path", None)
    if path is None:
        return f"promoted: {result}"
    text = f"promoted: wrote {path}"
    if getattr(result, "run_id", ""):
        text += f" (run id {result.run_id})"
    if getattr(result, "commit", ""):
        text += f", committed {str(result.commit)[:12]}"
    return text
