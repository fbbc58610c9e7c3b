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
from typing import IO

from devloop.core import events as ev


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


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
                 err: IO[str] | None = None, github: bool | None = None) -> None:
        self.json = json_lines
        self.verbose = verbose
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.github = os.environ.get("GITHUB_ACTIONS") == "true" if github is None else github
        self._partial: dict[tuple[int, str], list[str]] = {}  # unfinished lines, in pieces
        self._titles: dict[int, str] = {}
        self._progress_shown = False

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
    def _emit_line(self, cell: int, stream: str, line: str) -> None:
        prefix = f"[{cell}] " if cell >= 0 else "[target] "
        target = self.err if stream == "stderr" else self.out
        target.write(prefix + line + "\n")

    def _flush_partial(self, cell: int | None = None) -> None:
        for key in list(self._partial):
            if cell is None or key[0] == cell:
                text = "".join(self._partial.pop(key)).rstrip("\r")
                text = text[text.rfind("\r") + 1:]  # as a terminal shows it
                if text:
                    self._emit_line(key[0], key[1], text)

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
            for line in lines:
                self._emit_line(cell, stream, line.rsplit("\r", 1)[-1])
        if rest:
            cut = rest.rstrip("\r").rfind("\r")  # \r at the very end may yet start \r\n
            if cut >= 0:
                self._partial[key] = [rest[cut + 1:]]
            elif pieces:
                pieces.append(rest)
            else:
                self._partial[key] = [rest]

    def _write_text(self, event: ev.Event) -> None:
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
            title = f" {event.title}" if event.title else ""
            w(f"── cell {event.cell}{title} (line {event.line})\n")
        elif isinstance(event, ev.CellDone):
            self._flush_partial(event.cell)
            mark = "ok" if event.ok else "FAILED"
            w(f"── cell {event.cell} {mark} in {_ms(event.ms)}\n")
        elif isinstance(event, ev.CellError):
            self._flush_partial(event.cell)
            if event.traceback:
                for line in event.traceback.rstrip("\n").split("\n"):
                    self.err.write(f"[{event.cell}] {line}\n")
            self.err.write(f"error: {event.file}:{event.line}: {event.type}: {event.message}\n")
            self.err.flush()
        elif isinstance(event, ev.RunDone):
            self._flush_partial()
            status = "ok" if event.ok else f"failed (exit code {event.exit_code})"
            w(f"run {status}: {event.cells_run} cell{'s' if event.cells_run != 1 else ''} in {_ms(event.ms)}\n")
        elif isinstance(event, ev.SyncDone):
            if event.files or event.deleted:
                w(f"sync: {event.files} file{'s' if event.files != 1 else ''}, {_human_bytes(event.bytes)}, "
                  f"{event.deleted} deleted in {_ms(event.ms)}\n")
        elif isinstance(event, ev.SyncProgress):
            if self.err.isatty():
                eta = f", {event.eta_s:.0f} s left" if event.eta_s is not None else ""
                self.err.write(f"\rsync: {event.files_done}/{event.files_total} files, "
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
        elif isinstance(event, ev.Diagnostic):
            self.err.write(f"devloop [{event.level}]: {event.message}\n")
        self.out.flush()
