"""What a sync must do: a pure diff of two manifests (no I/O, so it is tested on its own).

A path is copied when its content (hash, size) or link target differs or it is new; only its
mode changed: a mode change (no bytes sent); gone from the new manifest: deleted. The dependency
files touched (requirements*.txt, pyproject.toml, uv.lock, environment.yml, in any folder) tell
the session to run the profile's `setup` command before the rerun.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from devloop.core.sync.manifest import Manifest

DEPENDENCY_NAMES = frozenset({"pyproject.toml", "uv.lock", "environment.yml", "environment.yaml"})
DEPENDENCY_GLOBS = ("requirements*.txt",)


def is_dependency_file(relpath: str) -> bool:
    name = relpath.rpartition("/")[2]
    if name in DEPENDENCY_NAMES:
        return True
    # a cheap test first: this runs for every path of a 100,000-file first sync
    return name.startswith("requirements") and any(fnmatch.fnmatchcase(name, g) for g in DEPENDENCY_GLOBS)


@dataclass(frozen=True)
class SyncPlan:
    copies: tuple[str, ...]
    deletes: tuple[str, ...]
    mode_changes: tuple[str, ...]
    dependency_files: tuple[str, ...]
    new_manifest: Manifest
    bytes_total: int

    @property
    def empty(self) -> bool:
        return not (self.copies or self.deletes or self.mode_changes)

    def summary(self) -> str:
        parts = [f"{len(self.copies)} to send ({self.bytes_total} bytes)", f"{len(self.deletes)} to delete"]
        if self.mode_changes:
            parts.append(f"{len(self.mode_changes)} mode changes")
        return ", ".join(parts)


def plan_sync(old: Manifest | None, new: Manifest) -> SyncPlan:
    """Diff `old` (what the remote has; None: nothing) against `new` (the local tree)."""
    old = old or {}
    copies: list[str] = []
    modes: list[str] = []
    size = 0
    for rel, entry in new.items():
        before = old.get(rel)
        if before is entry:
            continue
        if (before is None or before.sha256 != entry.sha256 or before.size != entry.size
                or before.link != entry.link):
            copies.append(rel)
            if entry.link is None:
                size += entry.size
        elif before.mode != entry.mode:
            modes.append(rel)
    deletes = [rel for rel in old if rel not in new]
    copies.sort()
    modes.sort()
    deletes.sort(key=lambda p: (-p.count("/"), p))  # deepest first: folders empty before their parents
    deps = sorted(p for p in (*copies, *deletes) if is_dependency_file(p))
    return SyncPlan(tuple(copies), tuple(deletes), tuple(modes), tuple(deps), new, size)
