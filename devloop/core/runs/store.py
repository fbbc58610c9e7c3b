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


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().split(b"\n")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return []


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip() or len(raw) > MAX_LINE:
        return None
    try:
        rec = json.loads(raw)
    except ValueError:  # a partial line a killed writer left, or a hand-edited one
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("run_id"), str) else None


def _files_newest_first(root: Path, keep: int) -> list[Path]:
    path = runs_path(root)
    return [path] + [_rotated(path, n) for n in range(1, keep + 1)]


def iter_newest(root: Path, *, keep: int = KEEP, match: bytes | None = None) -> Iterator[dict[str, Any]]:
    """Readable records, newest first, read lazily file by file (a listing of the newest 20
    never parses the rotated files). `match`: only lines holding these bytes are parsed."""
    for path in _files_newest_first(root, keep):
        for raw in reversed(_lines(path)):
            if match is not None and match not in raw:
                continue
            rec = _parse(raw)
            if rec is not None:
                yield rec


def read_all(root: Path, *, keep: int = KEEP) -> list[dict[str, Any]]:
    """Every readable record, oldest first (rotated files included); bad lines are skipped."""
    records = list(iter_newest(root, keep=keep))
    records.reverse()
    return records


GREEN_STATES = ("ok", "unchanged")


def is_green(record: dict[str, Any]) -> bool:
    """The pass succeeded and every code cell of the file is ok (ran ok now, or unchanged and ok
    in the session): this exact code worked on this profile."""
    cells = record.get("cells") or []
    return (record.get("ok") is True and record.get("exit_code") == 0 and bool(cells)
            and all(isinstance(c, dict) and c.get("state") in GREEN_STATES for c in cells))


class RunNotFound(LookupError):
    pass


def find(root: Path, prefix: str) -> dict[str, Any]:
    """The run whose id starts with `prefix` (as git does with commits); RunNotFound with a
    one-line reason when none or several match."""
    prefix = prefix.strip().lower()
    if not prefix:
        raise RunNotFound("an empty run id -- fix: name a run id (or its first characters) from `devloop runs`")
    needle = prefix.encode("utf-8", "replace") if prefix.isascii() else None  # skip lines without it
    matches = {r["run_id"]: r for r in iter_newest(root, match=needle) if r["run_id"].lower().startswith(prefix)}
    if not matches:
        raise RunNotFound(f"no run {prefix!r} in {runs_path(root)} -- fix: pick an id from `devloop runs`")
    if len(matches) > 1:
        shown = ", ".join(sorted(k[:12] for k in matches)[:5])
        raise RunNotFound(f"run id {prefix!r} is ambiguous ({len(matches)} runs: {shown}) "
                          "-- fix: give more characters")
    return next(iter(matches.values()))
