"""`devloop runs`: the recent runs from `.devloop/runs.jsonl`; `devloop runs show ID` for one."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from devloop.core.units import human_bytes, plural

NAME = "runs"
ORDER = 45
HELP = "list recent runs (when, profile, commit, result, duration, GPU peak); `runs show ID` for one"
DESCRIPTION = (
    "Every `devloop run` and every pass of `watch` / `up` leaves a record in .devloop/runs.jsonl: "
    "its run id, session, start and end, profile, target and image, git commit and dirty-diff hash, "
    "per-cell states and times, exit code, GPU peaks and sync figures. This lists the newest "
    "first; `devloop runs show ID` prints one run (a unique prefix of the id is enough, as with git)."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the records as JSON, one object per line (newest first)")
    parser.add_argument("-n", "--limit", type=int, default=20, metavar="N",
                        help="show the newest N runs (default 20; 0 for all that are kept)")
    parser.add_argument("-p", "--profile", metavar="P", help="only the runs on this profile")
    sub = parser.add_subparsers(dest="runs_command", title="one run", metavar="show ID")
    show = sub.add_parser("show", help="print one run: cells, errors, GPU, provenance",
                          description="Print one run record. ID may be the first characters of the "
                                      "run id, as long as only one run starts with them.")
    show.add_argument("run_id", metavar="ID", help="the run id, or a unique prefix of it")
    show.add_argument("--json", action="store_true", help="print the record as JSON")


def run(args: argparse.Namespace) -> int:
    from devloop.core.config import load_config
    from devloop.core.runs.store import RunNotFound, find, iter_newest, runs_path

    root = Path(load_config(Path.cwd()).root)
    if getattr(args, "runs_command", None) == "show":
        try:
            record = find(root, args.run_id)
        except RunNotFound as exc:
            print(f"devloop: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(record, sort_keys=True, ensure_ascii=False))
        else:
            sys.stdout.write("\n".join(show_lines(record)) + "\n")
        return 0
    records = []
    for r in iter_newest(root):  # newest first, parsed only as far as the listing needs
        if args.profile and r.get("profile") != args.profile:
            continue
        records.append(r)
        if args.limit and 0 < args.limit <= len(records):
            break
    if args.json:
        for r in records:
            print(json.dumps(r, sort_keys=True, ensure_ascii=False))
        return 0
    if not records:
        print(f"no runs recorded yet in {runs_path(root)} -- `devloop run FILE` records one")
        return 0
    sys.stdout.write("\n".join(table_lines(records)) + "\n")
    return 0


# ------------------------------------------------------------------------------ formatting
def _when(stamp: Any) -> str:
    try:
        t = _dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return str(stamp or "?")[:16]
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(ms: Any) -> str:
    try:
        value = float(ms or 0.0) / 1000
    except (TypeError, ValueError):
        return "?"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _commit(record: dict) -> str:
    git = record.get("git") or {}
    commit = str(git.get("commit") or "")[:10] or "-"
    return commit + ("+dirty" if git.get("dirty") else "")


def result(record: dict) -> str:
    from devloop.core.runs.store import is_green

    if is_green(record):
        return "ok"
    states = [c.get("state") for c in record.get("cells") or ()]
    if "detached" in states or "interrupted" in states:
        return "interrupted"
    if record.get("ok") and record.get("exit_code") == 0:
        return "ok (partial)"  # the pass was fine, some cells never ran in this session
    return f"failed ({record.get('exit_code')})"


def gpu_peak(record: dict) -> str:
    peaks = [g.get("mem_peak") for g in record.get("gpu") or ()
             if isinstance(g, dict) and isinstance(g.get("mem_peak"), (int, float))]
    if not peaks:
        return "-"
    from devloop.core.gpu import format_bytes  # only then: it costs the events' import

    return format_bytes(max(peaks))


def table_lines(records: list[dict]) -> list[str]:
    rows = [("RUN", "WHEN", "PROFILE", "FILE", "COMMIT", "RESULT", "TIME", "GPU PEAK")]
    for r in records:
        rows.append((str(r.get("run_id", ""))[:8], _when(r.get("start")), str(r.get("profile", "")),
                     str(r.get("file", "")), _commit(r), result(r), _duration(r.get("ms")), gpu_peak(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def show_lines(r: dict) -> list[str]:
    git = r.get("git") or {}
    image = r.get("image") or {}
    target = r.get("target") or {}
    sync = r.get("sync") or {}
    lines = [
        f"run       {r.get('run_id')}",
        f"result    {result(r).split(' (')[0]} (exit code {r.get('exit_code')})",
        f"file      {r.get('file')}" + (" (script)" if r.get("script") else ""),
        f"when      {_when(r.get('start'))} .. {_when(r.get('end'))} ({_duration(r.get('ms'))})",
        f"profile   {r.get('profile')} ({target.get('kind', '?')} on {target.get('host') or '?'}"
        + (f", {target.get('id')}" if target.get("id") and target.get("id") != target.get("host") else "") + ")",
        f"image     {image.get('ref') or '-'}" + (f" ({image.get('digest')})" if image.get("digest") else ""),
        f"commit    {git.get('commit') or '-'}"
        + (f" + uncommitted changes (diff sha256 {git.get('diff_sha256')})" if git.get("dirty") else ""),
        f"session   {r.get('session_id') or '- (a kernel that ended with the run)'}",
        f"devloop   {r.get('devloop_version')} ({r.get('mode')}{', ' + r['reason'] if r.get('reason') else ''})",
        f"sync      {plural(sync.get('files', 0), 'file')}, {human_bytes(sync.get('bytes', 0))}, "
        f"{sync.get('deleted', 0)} deleted "
        f"in {sync.get('syncs', 0)} sync(s), {sync.get('ms', 0)} ms",
        "",
        "cells",
    ]
    for c in r.get("cells") or ():
        lines.append(f"  {c.get('index'):>3}  {str(c.get('state')):<11} {_duration(c.get('ms')):>7}  "
                     f"line {c.get('line'):<5} {c.get('title') or ''}  [{str(c.get('hash', ''))[:12]}]")
    for e in r.get("errors") or ():
        lines += ["", f"error in cell {e.get('cell')}: {e.get('file')}:{e.get('line')}: "
                      f"{e.get('type')}: {e.get('message')}"]
        if e.get("traceback"):
            lines += ["  " + line for line in str(e["traceback"]).rstrip("\n").split("\n")]
    if r.get("gpu"):
        from devloop.core.gpu import format_summary

        lines += [""] + format_summary(r["gpu"])
    else:
        lines += ["", f"GPU: no samples ({r.get('gpu_note') or 'none'})"]
    return lines
