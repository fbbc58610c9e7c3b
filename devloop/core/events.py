"""The typed events every front end consumes.

The engine emits these and knows nothing of who listens: the headless reporter turns them into
text / JSON lines, the Textual app into widget updates. `to_json()` gives the `--json` line shape
documented in the README (key `event` plus the dataclass fields); `from_json()` is its inverse, so
events can travel between processes (a front end attached to a session over a socket).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping


@dataclass(frozen=True)
class Event:
    """Base class: `name` is the value of the `event` key in JSON output."""

    name: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.name}
        for f in dataclasses.fields(self):
            if f.metadata.get("json", True):
                data[f.name] = getattr(self, f.name)
        return data


@dataclass(frozen=True)
class SyncProgress(Event):
    """A long sync on its way: what is done so far, for a progress bar."""

    name: ClassVar[str] = "sync_progress"
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    rate_bps: float
    eta_s: float | None


@dataclass(frozen=True)
class SyncDone(Event):
    """A sync finished: files/bytes sent, files deleted on the remote."""

    name: ClassVar[str] = "sync"
    files: int
    bytes: int
    deleted: int
    ms: float
    dependencies_changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetState(Event):
    """Lifecycle of the target and kernel: starting, ready, reconnecting, kernel_died, stopped..."""

    name: ClassVar[str] = "target"
    state: str
    message: str = ""
    profile: str = ""
    kind: str = ""


@dataclass(frozen=True)
class KernelReady(Event):
    """The agent in the target is up: what it runs on."""

    name: ClassVar[str] = "ready"
    pid: int
    python: str
    cwd: str
    packages: dict[str, str] = field(default_factory=dict, metadata={"json": False})


@dataclass(frozen=True)
class FileParsed(Event):
    """The file's code cells as parsed now (index, title, line); is_script when it has no markers."""

    name: ClassVar[str] = "cells"
    file: str
    is_script: bool
    cells: tuple[dict, ...] = ()  # {"cell": i, "title": str, "line": n}


@dataclass(frozen=True)
class CellState(Event):
    """A cell's state changed: pending | running | ok | failed | stale."""

    name: ClassVar[str] = "cell_state"
    cell: int
    state: str


@dataclass(frozen=True)
class CellStart(Event):
    name: ClassVar[str] = "cell_start"
    cell: int
    line: int
    title: str


@dataclass(frozen=True)
class Output(Event):
    name: ClassVar[str] = "output"
    cell: int
    stream: str  # "stdout" | "stderr"
    text: str
    replayed: bool = False  # it arrived on the target while no front end was attached


@dataclass(frozen=True)
class InputRequest(Event):
    """A cell waits in input() / sys.stdin for a line (`n` numbers the questions of a kernel):
    a front end answers with Session.answer_input(n, text) -- or None: end of input. The prompt
    came as output already (as Python writes it); it is here for an input box."""

    name: ClassVar[str] = "input"
    cell: int
    n: int
    prompt: str = ""
    password: bool = False


@dataclass(frozen=True)
class CellDone(Event):
    name: ClassVar[str] = "cell_done"
    cell: int
    ok: bool
    ms: float
    exit_code: int | None = None  # the cell called sys.exit(): the pass ended with this code


@dataclass(frozen=True)
class CellError(Event):
    """User code raised: where (the user's file and line) and the formatted traceback."""

    name: ClassVar[str] = "error"
    cell: int
    type: str
    message: str
    file: str
    line: int
    traceback: str = ""  # Python's text, as the target printed it (also in `--json`)


@dataclass(frozen=True)
class CellsPlanned(Event):
    """Which cells this pass will run (indices among code cells), and which became stale."""

    name: ClassVar[str] = "plan"
    cells: tuple[int, ...]
    reason: str = ""


@dataclass(frozen=True)
class RunDone(Event):
    name: ClassVar[str] = "run_done"
    ok: bool
    exit_code: int
    cells_run: int
    ms: float


@dataclass(frozen=True)
class GpuSample(Event):
    """One NVML / nvidia-smi sample from inside the target, or why there is none."""

    name: ClassVar[str] = "gpu"
    available: bool
    gpus: tuple[dict, ...] = ()
    reason: str = ""
    source: str = ""


@dataclass(frozen=True)
class GpuSummary(Event):
    """End-of-run GPU figures per GPU: peak memory, mean and peak utilisation."""

    name: ClassVar[str] = "gpu_summary"
    gpus: tuple[dict, ...] = ()


@dataclass(frozen=True)
class RunRecorded(Event):
    """A pass ended and its record went to `.devloop/runs.jsonl` (core/runs): the run id and the
    whole record, for front ends that report it (JUnit, a CI step summary). `path` is "" when
    the record could not be written (the reason came as a warning)."""

    name: ClassVar[str] = "run_recorded"
    run_id: str
    record: dict = field(default_factory=dict)
    path: str = ""


@dataclass(frozen=True)
class Display(Event):
    """What a cell showed besides text: an image (a figure, a PIL image, a `_repr_png_`), saved
    under `path` (relative to the project root), or the text of its last expression's value /
    a `display()` call (mime text/plain, `text`). `k` counts what the cell showed in this run."""

    name: ClassVar[str] = "display"
    cell: int
    mime: str
    k: int = 0
    width: int = 0
    height: int = 0
    bytes: int = 0
    path: str = ""
    text: str = ""
    replayed: bool = False


@dataclass(frozen=True)
class PullDone(Event):
    """Outputs pulled back from the target (`[sync] pull`): files written, bytes, conflicts
    (`{"path": the local file kept, "remote": where the target's copy went}`), files left for
    the next pass (size cap)."""

    name: ClassVar[str] = "pull"
    files: tuple[str, ...] = ()
    bytes: int = 0
    conflicts: tuple[dict, ...] = ()
    deferred: tuple[str, ...] = ()
    ms: float = 0.0


@dataclass(frozen=True)
class Metric(Event):
    """A number that followed one of `[ui] metrics` in the output (`loss=0.12`): `step`
    counts that metric's values in this session."""

    name: ClassVar[str] = "metric"
    metric: str
    value: float
    step: int
    cell: int = -1


@dataclass(frozen=True)
class PortForward(Event):
    """A forwarded port: localhost:LOCAL reaches REMOTE inside the target. state: listening
    (at the session's start), closed (at its end)."""

    name: ClassVar[str] = "forward"
    local: int
    remote: int
    state: str
    bind: str = "127.0.0.1"
    host: str = "localhost"  # as the target sees it
    via: str = ""  # "ssh direct-tcpip" | "agent relay"


@dataclass(frozen=True)
class Diagnostic(Event):
    """What devloop does, for `-v` (profile resolved, sync plans, agent messages)."""

    name: ClassVar[str] = "log"
    level: str  # "debug" | "info" | "warning"
    message: str


Emit = Callable[[Event], None]


def from_json(data: Mapping[str, Any]) -> Event:
    """The event a `to_json()` dict stands for (also after a trip through JSON text: lists come
    back as the tuples the fields hold). Fields left out of the JSON (`KernelReady.packages`)
    get their defaults; keys this version does not know are ignored, so
    a newer peer's extra fields never break an older reader."""
    name = data.get("event") if isinstance(data, Mapping) else None
    cls = _event_class(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"not a devloop event: 'event' is {name!r} -- fix: pass a dict made by Event.to_json()")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            if isinstance(value, list) and str(f.type).startswith("tuple"):
                value = tuple(value)
            values[f.name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{name!r} event: {exc} -- fix: pass a dict made by Event.to_json()") from None


_BY_NAME: dict[str, type[Event]] = {}


def _event_class(name: str) -> type[Event] | None:
    """The Event subclass whose `name` is `name` (the table is rebuilt when a name is missing,
    so subclasses defined after the first call are found too)."""
    if name not in _BY_NAME:
        todo: list[type[Event]] = list(Event.__subclasses__())
        while todo:
            cls = todo.pop()
            _BY_NAME.setdefault(cls.name, cls)
            todo.extend(cls.__subclasses__())
    return _BY_NAME.get(name)
