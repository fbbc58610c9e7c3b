"""Which project files a stage runs: its `run` file and the local modules it imports.

A pipeline pins the code at a commit. When these files change after that commit, the pipeline
runs other code than the working tree holds: `promote --check` names them, and promote warns
when one of them is not tracked by git (the pinned commit cannot contain it).
Imports are found with `ast` (no code runs); a module counts as local when its file is inside
the project (`pkg/mod.py`, `pkg/mod/__init__.py`); everything else (torch, numpy) is ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath
from typing import Iterable

MAX_FILES = 500  # a stage that imports more than this stops the walk (a vendored tree)


def _module_files(root: Path, dotted: str) -> list[str]:
    """Project-relative files of a dotted module: its own file and its packages' __init__.py."""
    parts = [p for p in dotted.split(".") if p]
    found: list[str] = []
    for i in range(1, len(parts) + 1):
        base = PurePosixPath(*parts[:i])
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if (root / cand).is_file():
                found.append(cand.as_posix())
                break
    return found


def _imports(root: Path, rel: str) -> list[str]:
    path = root / rel
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    package = PurePosixPath(rel).parent.parts
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - (node.level - 1)] if node.level > 1 else package)
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix:
                names.append(prefix)
            for a in node.names:
                if a.name != "*":
                    names.append(f"{prefix}.{a.name}" if prefix else a.name)
    files: list[str] = []
    for name in names:
        files.extend(_module_files(root, name))
    return files


def stage_files(root: Path, entries: Iterable[str]) -> list[str]:
    """`entries` (project-relative files) and every local module they import, transitively."""
    seen: list[str] = []
    todo = [e for e in entries if e and (root / e).is_file()]
    while todo and len(seen) < MAX_FILES:
        rel = todo.pop(0)
        if rel in seen:
            continue
        seen.append(rel)
        todo.extend(f for f in _imports(root, rel) if f not in seen)
    return sorted(seen)
