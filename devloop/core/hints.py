"""Fix hints that name what the user can run: the file they probably meant."""

from __future__ import annotations

import difflib
from pathlib import Path


def nearest_file(missing: Path) -> str | None:
    """The file next to `missing` whose name is closest to it (`trian.py` -> `train.py`), as a
    path relative to the current folder when it is under it; None when nothing is close."""
    folder = missing.parent
    try:
        names = [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:
        return None
    same_kind = [n for n in names if Path(n).suffix == missing.suffix] or names
    found = difflib.get_close_matches(missing.name, same_kind, n=1, cutoff=0.6)
    if not found:
        return None
    path = folder / found[0]
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
