"""`devloop run`'s reports for CI: the JUnit file (`--junit`) and the GitHub step summary.

Both render the run record the host's recorder wrote (a `RunRecorded` event); the cells'
output, which the record does not keep, is collected from the events here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from devloop.core import events as ev
from devloop.core.runs.junit import OutputCollector, junit_xml


class RunReport:
    """A listener for `devloop run`; `finish(code, resolved)` writes the reports at the end."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.junit = getattr(args, "junit", None)
        self.outputs = OutputCollector()
        self.record: dict[str, Any] | None = None

    def __call__(self, event: ev.Event) -> None:
        self.outputs(event)
        if isinstance(event, ev.RunRecorded):
            self.record = event.record

    def finish(self, code: int, resolved: tuple | None) -> int:
        record = self.record or _no_run_record(code, resolved)
        if self.junit:
            try:
                _write_atomic(Path(self.junit), junit_xml(record, self.outputs.outputs()))
            except OSError as exc:
                print(f"devloop: --junit {self.junit}: cannot write it: {exc.strerror or exc} "
                      "-- fix: name a file in a folder that exists and is writable", file=sys.stderr)
                return code or 2
        if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_STEP_SUMMARY"):
            from devloop.core.runs.step_summary import append_step_summary

            extra: list[str] = []
            if resolved is not None:
                config, profile, _file = resolved
                extra += [str(v) for v in (getattr(config.run, "env", None) or {}).values()]
                extra += [str(v) for v in (getattr(profile, "env", None) or {}).values()]
            try:
                append_step_summary(record, extra_secrets=extra)
            except OSError as exc:
                print(f"devloop: GITHUB_STEP_SUMMARY: cannot append the run summary: "
                      f"{exc.strerror or exc}", file=sys.stderr)
        return code


def _no_run_record(code: int, resolved: tuple | None) -> dict[str, Any]:
    """A stand-in when no pass ran (the target did not start, a usage error): one failed
    testcase, so a CI test report says the run failed instead of finding nothing."""
    file = ""
    profile = ""
    if resolved is not None:
        config, prof, path = resolved
        profile = getattr(prof, "name", "")
        if path is not None:
            try:
                file = Path(path).resolve().relative_to(Path(config.root).resolve()).as_posix()
            except ValueError:
                file = str(path)
    return {"run_id": "", "file": file or "run", "profile": profile, "ok": False, "exit_code": code,
            "script": True, "ms": 0.0, "git": {}, "image": {}, "target": {}, "gpu": [],
            "cells": [{"index": 0, "title": "devloop run", "line": 1, "state": "failed", "ms": 0.0}],
            "errors": [{"cell": 0, "type": "DevloopError", "file": file or "run", "line": 1,
                        "message": f"the run did not start (exit code {code}): see the job's log"}]}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o644)  # a report other CI steps read, not a secret
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
