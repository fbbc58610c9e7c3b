"""Where the images a cell showed are kept: `.devloop/outputs/<run>/cell<N>-<k>.png`.

A run is one pass (the session calls `next_run()` as a pass starts); its folder is made when
its first image arrives, named by the local time and a counter (`20261130-093512-1`), so the
names sort by age. Only the newest RUNS_KEPT run folders stay: older ones are removed when a
new one is made, so a long `devloop up` session never fills the disk with figures.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from devloop.core import events as ev

RUNS_KEPT = 10
_SUFFIX = {"image/png": ".png", "image/svg+xml": ".svg"}


class OutputStore:
    def __init__(self, root: Path, keep: int = RUNS_KEPT) -> None:
        self.root = Path(root)
        self.base = self.root / ".devloop" / "outputs"
        self.keep = keep
        self._run: Path | None = None
        self._counter = itertools.count(1)

    def next_run(self) -> None:
        """The next image starts a new run folder."""
        self._run = None

    def _run_dir(self) -> Path:
        if self._run is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            while True:
                folder = self.base / f"{stamp}-{os.getpid()}-{next(self._counter)}"
                if not folder.exists():
                    break
            folder.mkdir(parents=True, mode=0o700)
            self._run = folder
            self._prune()
        return self._run

    def _prune(self) -> None:
        try:
            runs = sorted((p for p in self.base.iterdir() if p.is_dir() and not p.is_symlink()),
                          key=lambda p: p.stat().st_mtime_ns)
        except OSError:
            return
        for old in runs[: max(0, len(runs) - self.keep)]:
            if old != self._run:
                shutil.rmtree(old, ignore_errors=True)

    def save(self, cell: int, k: int, mime: str, data: bytes) -> Path:
        """Write one image; the path returned is absolute."""
        folder = self._run_dir()
        stem = f"cell{cell}-{k}" if cell >= 0 else f"target-{k}"
        path = folder / (stem + _SUFFIX.get(mime, ".bin"))
        n = 2
        while path.exists():  # a replayed or second image of the same cell and k
            path = folder / f"{stem}.{n}{_SUFFIX.get(mime, '.bin')}"
            n += 1
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path

    def event(self, msg: Mapping[str, Any], cell: int, replayed: bool = False) -> ev.Display:
        """The Display event for an agent `display` message: images are saved first."""
        mime = str(msg.get("mime") or "text/plain")
        k = _int(msg.get("k"))
        if mime == "text/plain" or "data" not in msg:
            return ev.Display(cell=cell, mime=mime, k=k, text=str(msg.get("text", "")), replayed=replayed)
        try:
            data = base64.b64decode(str(msg.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            return ev.Display(cell=cell, mime="text/plain", k=k, text="<an image arrived damaged>",
                              replayed=replayed)
        path = self.save(cell, k, mime, data)
        try:
            rel = str(path.relative_to(self.root))
        except ValueError:
            rel = str(path)
        return ev.Display(cell=cell, mime=mime, k=k, width=_int(msg.get("width")),
                          height=_int(msg.get("height")), bytes=len(data), path=rel, replayed=replayed)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
