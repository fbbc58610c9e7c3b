"""`.devloop/runs.jsonl`: the append-only log of runs, one JSON object per line, newest last.

Why this shape: a record must survive the writer being killed at any moment, and the next
writer must never be blocked or confused by what a dead one left. So:

- one `write()` per record on an `O_APPEND` descriptor, then flush and `fsync`: a record is on
  disk before the run is reported done; nothing already written is ever rewritten;
- a partial last line (the writer was SIGKILLed mid-write) is skipped by readers, and the next
  writer first ends it with a newline, so its own record starts on a line of its own;
- growth is bounded: when the file passes `MAX_BYTES` it is renamed to `runs.jsonl.1` (older
  ones shift to `.2` ... `.KEEP`, the oldest is deleted), all under a lock file, so at most
  `(KEEP + 1) * MAX_BYTES` of records are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

RUNS_FILE = ".devloop/runs.jsonl"
MAX_BYTES = 4 * 1024 * 1024  # one file's size before it is rotated (~2,000 runs of a 20-cell file)
KEEP = 4  # rotated files kept: runs.jsonl.1 .. runs.jsonl.4
MAX_LINE = 1024 * 1024  # a line longer than this is not a record (never parsed)


def runs_path(root: Path) -> Path:
    return Path(root) / RUNS_FILE


def _rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the log: two writers (a `watch` and a `run`) never rotate or
    append at the same moment. The lock goes with the process, also when it is killed."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _rotate(path: Path, keep: int) -> None:
    for n in range(keep, 0, -1):
        older = _rotated(path, n)
        if n == keep:
            with contextlib.suppress(FileNotFoundError):
                older.unlink()
            continue
        with contextlib.suppress(FileNotFoundError):
            os.replace(older, _rotated(path, n + 1))
    if keep > 0:
        os.replace(path, _rotated(path, 1))
    else:
        path.unlink()


def append(root: Path, record: dict[str, Any], *, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> Path:
    """Append `record` as one line (flushed and fsynced before returning); the log's path."""
    path = runs_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    with _locked(path):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size >= max_bytes:
                _rotate(path, keep)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a killed writer's partial line stays a line of its own
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def _read_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return []
    out: list[dict[str, Any]] = []
    for raw in data.split(b"\n"):
        if not raw.strip() or len(raw) > MAX_LINE:
            continue
        try:
            rec = json.loads(raw)
        except ValueError:  # a partial line a killed writer left, or a hand-edited one
            continue
        if isinstance(rec, dict) and isinstance(rec.get("run_id"), str):
            out.append(rec)
    return out


def read_all(root: Path, *, keep: int = KEEP) -> list[dict[str, Any]]:
    """Every readable record, oldest first (rotated files included); bad lines are skipped."""
    path = runs_path(root)
    records: list[dict[str, Any]] = []
    for n in range(keep, 0, -1):
        records.extend(_read_file(_rotated(path, n)))
    records.extend(_read_file(path))
    return records


class RunNotFound(LookupError):
    pass


def find(root: Path, prefix: str) -> dict[str, Any]:
    """The run whose id starts with `prefix` (as git does with commits); RunNotFound with a
    one-line reason when none or several match."""
    prefix = prefix.strip().lower()
    if not prefix:
        raise RunNotFound("an empty run id -- fix: name a run id (or its first characters) from `devloop runs`")
    matches = {r["run_id"]: r for r in read_all(root) if r["run_id"].lower().startswith(prefix)}
    if not matches:
        raise RunNotFound(f"no run {prefix!r} in {runs_path(root)} -- fix: pick an id from `devloop runs`")
    if len(matches) > 1:
        shown = ", ".join(sorted(k[:12] for k in matches)[:5])
        raise RunNotFound(f"run id {prefix!r} is ambiguous ({len(matches)} runs: {shown}) "
                          "-- fix: give more characters")
    return next(iter(matches.values()))
