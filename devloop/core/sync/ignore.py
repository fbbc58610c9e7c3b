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
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:  # pragma: no cover
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
    if not lines:
        return None
    # imported here: a rescan whose decisions all come from the stat cache never needs it
    # (pathspec's import, with its backend probing, is ~30 ms of every `devloop sync`)
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


_DIR_GROUP = "(?P<ps_d>"


def _prefilter(spec: pathspec.GitIgnoreSpec) -> Optional[re.Pattern]:
    """One regex that matches whenever any pattern of `spec` could: most paths match none, and
    one combined search is ~10x cheaper than asking every pattern (pathspec's own loop).
    None when the patterns cannot be combined safely (then every path asks pathspec)."""
    parts = []
    for pattern in spec.patterns:
        regex = getattr(pattern, "regex", None)
        if getattr(pattern, "include", None) is None or regex is None:
            continue
        src = regex.pattern
        if not isinstance(src, str) or regex.flags != re.UNICODE:
            return None
        src = src.replace(_DIR_GROUP, "(?:")
        if "(?P" in src or re.search(r"\\[0-9g]", src):
            return None  # named groups or back references: cannot be joined
        parts.append(f"(?:{src})")
    try:
        return re.compile("|".join(parts)) if parts else re.compile(r"(?!)")
    except re.error:
        return None


class IgnoreRules:
    """Gitignore-style decisions for posix relpaths under `root`."""

    def __init__(self, root: Path, extra_patterns: Iterable[str] = (), *, standalone: bool = False) -> None:
        self.root = Path(root)
        self.extra_patterns = tuple(extra_patterns)
        # standalone: only `extra_patterns`, as one top-level ignore file (no defaults, no ignore
        # files read, no always-excluded names): `[sync] pull` picks files with the same matcher
        self.standalone = standalone
        self._levels: dict[str, tuple[pathspec.GitIgnoreSpec, Optional[re.Pattern]] | None] = {}
        # folder -> [(offset, spec, prefilter)]: the levels that have rules, deepest first
        self._chains: dict[str, list[tuple[int, pathspec.GitIgnoreSpec, Optional[re.Pattern]]]] = {}
        self._decisions: dict[tuple[str, bool], bool] = {}
        self.generation = 0  # bumped by reload(): decisions made before it no longer hold

    @classmethod
    def load(cls, root: Path | str, extra_patterns: Iterable[str] = ()) -> "IgnoreRules":
        return cls(Path(root), extra_patterns)

    @classmethod
    def of_patterns(cls, patterns: Iterable[str]) -> "IgnoreRules":
        """`patterns` alone, matched exactly as one top-level .gitignore (`[sync] pull`)."""
        return cls(Path("."), patterns, standalone=True)

    def remembered(self) -> list[list]:
        """The decisions worth keeping across runs (with the stat cache): every folder's and
        every excluded file's, as [relpath, is_dir, excluded]. Included files need none: a
        cached file was found included under the same rules."""
        return [[rel, is_dir, ignored] for (rel, is_dir), ignored in self._decisions.items()
                if is_dir or ignored]

    def remember(self, decisions: Iterable) -> None:
        """Take decisions back from `remembered()` (the caller checked the rules are the same)."""
        known = self._decisions
        for rel, is_dir, ignored in decisions:
            known[(str(rel), bool(is_dir))] = bool(ignored)

    def reload(self) -> None:
        """Forget loaded ignore files and cached decisions (an ignore file changed)."""
        self._levels.clear()
        self._chains.clear()
        self._decisions.clear()
        self.generation += 1

    def fingerprint(self) -> list:
        """The rules that do not come from ignore files (those are checked by size and mtime)."""
        return [list(DEFAULT_PATTERNS), sorted(ALWAYS_EXCLUDED), list(self.extra_patterns)]

    @staticmethod
    def is_ignore_file(relpath: str) -> bool:
        return relpath.rsplit("/", 1)[-1] in IGNORE_FILES

    def note_listing(self, dir_rel: str, names: Iterable[str]) -> None:
        """A walk listed `dir_rel`: without an ignore file there, its level is known empty
        without trying to open them (two failed opens per folder on every cold scan)."""
        if dir_rel and dir_rel not in self._levels and not any(n in IGNORE_FILES for n in names):
            self._levels[dir_rel] = None

    def _level(self, dir_rel: str) -> tuple[pathspec.GitIgnoreSpec, Optional[re.Pattern]] | None:
        try:
            return self._levels[dir_rel]
        except KeyError:
            pass
        lines: list[str] = []
        if self.standalone:
            spec = _spec(self.extra_patterns) if dir_rel == "" else None
            level = self._levels[dir_rel] = (spec, _prefilter(spec)) if spec is not None else None
            return level
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
        spec = _spec(lines)
        level = self._levels[dir_rel] = (spec, _prefilter(spec)) if spec is not None else None
        return level

    def _chain(self, dir_rel: str) -> list[tuple[int, pathspec.GitIgnoreSpec, Optional[re.Pattern]]]:
        try:
            return self._chains[dir_rel]
        except KeyError:
            pass
        above = self._chain(dir_rel.rpartition("/")[0]) if dir_rel else []
        level = self._level(dir_rel)
        offset = len(dir_rel) + 1 if dir_rel else 0
        chain = self._chains[dir_rel] = ([(offset, *level)] if level is not None else []) + above
        return chain

    def _decide(self, relpath: str, is_dir: bool) -> bool:
        """The decision for one path, its ancestors assumed not excluded."""
        key = (relpath, is_dir)
        try:
            return self._decisions[key]
        except KeyError:
            pass
        parent, _, name = relpath.rpartition("/")
        result = False
        if name in ALWAYS_EXCLUDED and not self.standalone:
            return True  # not stored: a rule, not a decision (nothing to keep with the cache)
        else:
            suffix = "/" if is_dir else ""
            # deepest folder first: the first level with an opinion decides
            for offset, spec, pre in self._chain(parent):
                sub = relpath[offset:] + suffix
                if pre is not None and pre.search(sub) is None:
                    continue  # no pattern of this level can match: no opinion
                verdict = spec.check_file(sub).include
                if verdict is not None:
                    result = verdict
                    break
        self._decisions[key] = result
        return result

    def top_regexes(self) -> list[tuple[str, bool]]:
        """The top folder's rules as (regex source, include), in order: what a matcher without
        pathspec (the agent, stdlib-only) needs to decide as `check_file` does (see
        agent/pullsend.py `verdict`)."""
        level = self._level("")
        if level is None:
            return []
        return [(pattern.regex.pattern, bool(pattern.include)) for pattern in level[0].patterns
                if getattr(pattern, "include", None) is not None and getattr(pattern, "regex", None) is not None]

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
