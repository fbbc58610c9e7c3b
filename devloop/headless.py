"""Headless front end: core events as readable lines, JSON lines, or GitHub annotations.

Readable mode prefixes each output line with its cell (`[2] loss=0.31`), keeps partial lines until
their newline arrives, and puts stderr lines on stderr. JSON mode prints `event.to_json()` one per
line, flushed, so a pipeline consumer sees each event as it happens. Under GITHUB_ACTIONS=true an
error also prints `::error file=F,line=L::message`, which GitHub shows on the line of the diff.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import IO, Callable

from devloop.core import events as ev
from devloop.core.metrics import MetricHistory
from devloop.core.units import human_bytes as _human_bytes
from devloop.core.units import plural
from devloop.headless_live import LiveLines


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_escape(text).replace(":", "%3A").replace(",", "%2C")


_LINE_END = re.compile(r"\r+\n")


class Reporter:
    """Callable taking core events; writes them to stdout/stderr in the chosen format."""

    def __init__(self, *, json_lines: bool = False, verbose: int = 0, out: IO[str] | None = None,
                 err: IO[str] | None = None, github: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.json = json_lines
        self.verbose = verbose
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.github = os.environ.get("GITHUB_ACTIONS") == "true" if github is None else github
        self._partial: dict[tuple[int, str], list[str]] = {}  # unfinished lines, in pieces
        self._titles: dict[int, str] = {}
        self._progress_shown = False
        self._interrupted: set[int] = set()  # cells a KeyboardInterrupt ended
        self._metrics = MetricHistory()  # [ui] metrics seen: last and best at the end of a run
        # the unfinished lines shown while they change (in place on a terminal, every few
        # seconds in a log): see headless_live.py
        self.live = LiveLines(text_of=self._live_text, prefix=lambda key: self._prefix(key[0]),
                              file_for=lambda key: self.err if key[1] == "stderr" else self.out,
                              clock=clock)

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Diagnostic) and not self._wants(event):
            return
        if self.json:
            self._write_json(event)
        else:
            self._write_text(event)
        if self.github and isinstance(event, ev.CellError):
            self.out.write(f"::error file={_gh_prop(event.file)},line={event.line},"
                           f"title={_gh_prop(event.type)}::{_gh_escape(event.message)}\n")
            self.out.flush()

    def _wants(self, event: ev.Diagnostic) -> bool:
        if event.level == "warning":
            return True
        if event.level == "info":
            return self.verbose >= 1
        return self.verbose >= 2 or (self.verbose >= 1 and event.message.startswith(("sync plan", "agent:", "kernel", "profile", "target")))

    def _write_json(self, event: ev.Event) -> None:
        try:
            line = json.dumps(event.to_json(), ensure_ascii=False, default=str)
        except ValueError:
            line = json.dumps(event.to_json(), default=str)
        self.out.write(line + "\n")
        self.out.flush()

    # ------------------------------------------------------------- readable text
    @staticmethod
    def _prefix(cell: int) -> str:
        return f"[{cell}] " if cell >= 0 else "[target] "

    def _emit_line(self, cell: int, stream: str, line: str) -> None:
        self.live.undraw()
        target = self.err if stream == "stderr" else self.out
        target.write(self._prefix(cell) + line + "\n")

    def _live_text(self, key: tuple[int, str], bound: int | None = None) -> str | None:
        """An unfinished line as a terminal shows it now (None: there is none). With `bound`, a
        line of many pieces is given as its head and its last `bound` characters (enough to draw
        it cut to a terminal's width; a 10 MB line is not joined at every chunk)."""
        pieces = self._partial.get(key)
        if not pieces:
            return None
        if bound is not None and len(pieces) > 8:
            tail: list[str] = []
            size = 0
            for piece in reversed(pieces):
                tail.append(piece)
                size += len(piece)
                if size >= bound:
                    break
            text = pieces[0][:bound] + "…" + "".join(reversed(tail))[-bound:].rstrip("\r")
        else:
            text = "".join(pieces).rstrip("\r")
        return text[text.rfind("\r") + 1:] or None

    def _flush_partial(self, cell: int | None = None) -> None:
        for key in list(self._partial):
            if cell is None or key[0] == cell:
                text = self._live_text(key)
                del self._partial[key]
                # its final state, unless a timed print showed exactly that already
                if text and text != self.live.printed_last(key):
                    self._emit_line(key[0], key[1], text)
                self.live.finished(key)

    def _feed(self, cell: int, stream: str, chunk: str) -> None:
        """One chunk of output: complete lines are written, the unfinished tail is kept as a list
        of pieces (joined once, when its newline comes), so a chunk costs its own length however
        long the line it continues already is. A carriage return drops what came before it on
        the line (a terminal shows only the text after it): a tqdm bar redrawn for hours
        keeps one bar in memory."""
        key = (cell, stream)
        text = _LINE_END.sub("\n", chunk)  # \r\n, and \r\r\n as a terminal shows it
        pieces = self._partial.get(key)
        *lines, rest = text.split("\n")
        if lines:
            if pieces:
                head = "".join(pieces)
                if not lines[0]:  # \r...\r\n split across chunks: a line end, not a redraw
                    head = head.rstrip("\r")
                lines[0] = head + lines[0]
                del self._partial[key]
            pieces = None
            last = self.live.printed_last(key)
            for index, line in enumerate(lines):
                line = line.rsplit("\r", 1)[-1]
                if index or line != last or not line:  # else a timed print showed it already
                    self._emit_line(cell, stream, line)
            self.live.finished(key)
        if rest:
            cut = rest.rstrip("\r").rfind("\r")  # \r at the very end may yet start \r\n
            if cut >= 0:
                self._partial[key] = [rest[cut + 1:]]
            elif pieces and pieces[-1].endswith("\r") and rest.strip("\r"):
                self._partial[key] = [rest]  # that \r was a carriage return, not half a \r\n
            elif pieces:
                pieces.append(rest)
            else:
                self._partial[key] = [rest]
            self.live.changed(key)

    def _write_text(self, event: ev.Event) -> None:
        self.live.undraw()  # a live line drawn on a terminal goes while other lines are written
        try:
            self._write_event(event)
        finally:
            self.live.redraw()

    def _write_event(self, event: ev.Event) -> None:
        w = self.out.write
        if self._progress_shown and not isinstance(event, ev.SyncProgress):
            self.err.write("\n")
            self._progress_shown = False
        if isinstance(event, ev.Output):
            self._feed(event.cell, event.stream, event.text)
            self.out.flush()
            return
        if isinstance(event, ev.CellStart):
            self._flush_partial()
            self._interrupted.discard(event.cell)
            title = f" {event.title}" if event.title else ""
            w(f"── cell {event.cell}{title} (line {event.line})\n")
        elif isinstance(event, ev.CellDone):
            self._flush_partial(event.cell)
            mark = "ok" if event.ok else "interrupted" if event.cell in self._interrupted else "FAILED"
            if event.exit_code is not None:  # sys.exit(code) in the cell ended the pass
                mark = f"exited (sys.exit, code {event.exit_code})"
            w(f"── cell {event.cell} {mark} in {_ms(event.ms)}\n")
        elif isinstance(event, ev.InputRequest):  # the prompt (its output) shows before the answer
            self._flush_partial(event.cell)
        elif isinstance(event, ev.CellError):
            self._flush_partial(event.cell)
            if event.type == "KeyboardInterrupt":
                self._interrupted.add(event.cell)
            else:
                self._interrupted.discard(event.cell)
            if event.traceback:
                for line in event.traceback.rstrip("\n").split("\n"):
                    self.err.write(f"[{event.cell}] {line}\n")
            self.err.write(f"error: {event.file}:{event.line}: {event.type}: {event.message}\n")
            self.err.flush()
        elif isinstance(event, ev.RunDone):
            self._flush_partial()
            status = "ok" if event.ok else f"failed (exit code {event.exit_code})"
            if event.ok and event.cells_run == 0:  # attached: the session had every cell up to date
                w("run ok: nothing reran (every cell is up to date in the session)\n")
            else:
                w(f"run {status}: {plural(event.cells_run, 'cell')} in {_ms(event.ms)}\n")
            for line in self._metrics.summary_lines():
                w(line + "\n")
            self._metrics = MetricHistory()  # `watch`: each pass sums up its own values
        elif isinstance(event, ev.SyncDone):
            if event.files or event.deleted:
                w(f"sync: {plural(event.files, 'file')}, {_human_bytes(event.bytes)}, "
                  f"{event.deleted} deleted in {_ms(event.ms)}\n")
        elif isinstance(event, ev.SyncProgress):
            if self.err.isatty():
                eta = f", {event.eta_s:.0f} s left" if event.eta_s is not None else ""
                self.err.write(f"\rsync: {event.files_done}/{plural(event.files_total, 'file')}, "
                               f"{_human_bytes(event.bytes_done)}/{_human_bytes(event.bytes_total)} "
                               f"at {_human_bytes(event.rate_bps)}/s{eta}   ")
                self._progress_shown = True
        elif isinstance(event, ev.TargetState):
            if event.state in ("error", "kernel_died", "reconnecting", "setup_failed"):
                self.err.write(f"devloop: {event.message}\n")
            elif event.state in ("setup",) or (event.state == "ready" and "reconnected" in event.message):
                w(f"devloop: {event.message}\n")
            elif self.verbose and event.message:
                self.err.write(f"devloop: {event.state}: {event.message}\n")
        elif isinstance(event, ev.KernelReady):
            if self.verbose:
                self.err.write(f"devloop: kernel pid {event.pid}, python {event.python}, cwd {event.cwd}\n")
        elif isinstance(event, ev.GpuSummary):
            from devloop.core.gpu import format_summary

            for line in format_summary(event.gpus):
                w(line + "\n")
        elif isinstance(event, ev.Display):
            self._flush_partial(event.cell)
            if event.path:
                w(f"{self._prefix(event.cell)}figure: {event.path}\n")
            else:
                for line in event.text.split("\n"):
                    w(f"{self._prefix(event.cell)}{line}\n")
        elif isinstance(event, ev.Metric):
            self._metrics.add(event.metric, event.value)
        elif isinstance(event, ev.PullDone):
            w(f"pull: {plural(len(event.files), 'file')}, {_human_bytes(event.bytes)} in {_ms(event.ms)}\n")
            for conflict in event.conflicts:
                w(f"pull: conflict: {conflict['path']} changed here since the last pull; the target's copy "
                  f"is {conflict['remote']}\n")
        elif isinstance(event, ev.RunRecorded):
            if event.path and event.run_id:  # what `devloop runs show` finds it by
                short = event.run_id[:8]
                w(f"record: run {short} (devloop runs show {short})\n")
        elif isinstance(event, ev.PortForward):
            from devloop.core.ports.spec import ForwardSpec

            if event.state == "listening":  # printed at the start; their end is the session's
                bind = "localhost" if event.bind in ("127.0.0.1", "localhost") else event.bind
                remote = ForwardSpec(event.local, event.remote, event.host).remote_label
                self.err.write(f"devloop: forward {bind}:{event.local} -> {remote} ({event.via})\n")
        elif isinstance(event, ev.Diagnostic):
            self.err.write(f"devloop [{event.level}]: {event.message}\n")
        self.out.flush()
