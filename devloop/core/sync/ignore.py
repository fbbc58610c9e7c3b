"""Which paths sync leaves alone: gitignore syntax (pathspec), layered the way git layers it.

Sources, weakest first: devloop's defaults (editor temporaries, `__pycache__/`), then per folder
`.gitignore` and `.devloopignore` (deeper folders override shallower ones; within a folder,
`.devloopignore` overrides `.gitignore`, and `[sync].exclude` joins the top folder's rules last).
`.git/` and `.devloop/` are always excluded, whatever a negation says. As in git, a file inside
an excluded folder cannot be re-included.

Decisions are cached per path: the scanner asks for every file on every rescan and the watcher
for every event, and both must stay cheap. `reload()` forgets everything (an ignore file changed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pathspec

IGNORE_FILES = (".gitignore", ".devloopignore")
ALWAYS_EXCLUDED = frozenset({".git", ".devloop"})
# Editor temporaries (vim swap/backup/4913 probe, emacs locks/autosaves) and bytecode: never
# worth sending, and a save must give one sync, not three. A negation in an ignore file wins.
DEFAULT_PATTERNS = (
    "*.swp", "*.swx", "*.swo", "*~", "4913", ".#*", "#*#", "__pycache__/", "*.pyc",
    ".*.devloop-tmp-*",
)


def _spec(lines: Iterable[str]) -> pathspec.GitIgnoreSpec | None:
    lines = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


class IgnoreRules:
    """Gitignore-style decisions for posix relpaths under `root`."""

    def __init__(self, root: Path, extra_patterns: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.extra_patterns = tuple(extra_patterns)
        self._levels: dict[str, pathspec.GitIgnoreSpec | None] = {}
        self._decisions: dict[tuple[str, bool], bool] = {}

    @classmethod
    def load(cls, root: Path | str, extra_patterns: Iterable[str] = ()) -> "IgnoreRules":
        return cls(Path(root), extra_patterns)

    def reload(self) -> None:
        """Forget loaded ignore files and cached decisions (an ignore file changed)."""
        self._levels.clear()
        self._decisions.clear()

    @staticmethod
    def is_ignore_file(relpath: str) -> bool:
        return relpath.rsplit("/", 1)[-1] in IGNORE_FILES

    def _level(self, dir_rel: str) -> pathspec.GitIgnoreSpec | None:
        try:
            return self._levels[dir_rel]
        except KeyError:
            pass
        lines: list[str] = []
        if dir_rel == "":
            lines.extend(DEFAULT_PATTERNS)
        folder = os.path.join(self.root, dir_rel) if dir_rel else str(self.root)
        for name in IGNORE_FILES:
            try:
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                    lines.extend(f.read().splitlines())
            except OSError:
                pass
        if dir_rel == "":
            lines.extend(self.extra_patterns)
        spec = self._levels[dir_rel] = _spec(lines)
        return spec

    def _decide(self, relpath: str, is_dir: bool) -> bool:
        """The decision for one path, its ancestors assumed not excluded."""
        key = (relpath, is_dir)
        try:
            return self._decisions[key]
        except KeyError:
            pass
        name = relpath.rsplit("/", 1)[-1]
        result = False
        if name in ALWAYS_EXCLUDED:
            result = True
        else:
            parts = relpath.split("/")
            # deepest folder first: the first level with an opinion decides
            for depth in range(len(parts) - 1, -1, -1):
                spec = self._level("/".join(parts[:depth]))
                if spec is None:
                    continue
                sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
                verdict = spec.check_file(sub).include
                if verdict is not None:
                    result = verdict
                    break
        self._decisions[key] = result
        return result

    def matches_child(self, dir_rel: str, name: str, is_dir: bool) -> bool:
        """For a walk that already pruned excluded folders: is `dir_rel/name` excluded?"""
        return self._decide(f"{dir_rel}/{name}" if dir_rel else name, is_dir)

    def matches(self, relpath: str, is_dir: bool = False) -> bool:
        """Is `relpath` excluded, itself or through a folder above it?"""
        relpath = relpath.strip("/")
        if not relpath or relpath == ".":
            return False
        parts = relpath.split("/")
        for depth in range(1, len(parts)):
            if self._decide("/".join(parts[:depth]), True):
                return True
        return self._decide(relpath, is_dir)
