"""The snapshot log: `.devloop/snapshots.jsonl`, one JSON object per line, newest last.

Each line pins what a working dev environment was: {"image", "image_id", "repo_digest",
"git_commit", "dirty", "time", "run_id", "profile"}. `devloop promote` reads it
(`devloop.core.promote.provenance.latest_snapshot`) to pin the pipeline's image.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from devloop.core.promote.provenance import SNAPSHOT_LOG
from devloop.core.targets.base import Snapshot


def _git(root: Path) -> tuple[str, bool]:
    """(HEAD commit or "", dirty) -- outside a git repository or before the first commit: ("", False)."""
    from devloop.core.promote.model import PromoteError
    from devloop.core.promote.provenance import git_state

    try:
        state = git_state(root)
    except (PromoteError, OSError):
        return "", False
    return state.commit, bool(state.dirty_files)


def record_snapshot(root: Path, snap: Snapshot, *, profile: str, run_id: str | None = None) -> dict[str, Any]:
    """Append one record for `snap` to the project's log; the record written."""
    commit, dirty = _git(root)
    record = {
        "image": snap.image,
        "image_id": snap.image_id,
        "repo_digest": str(snap.details.get("repo_digest") or ""),
        "git_commit": commit,
        "dirty": dirty,
        "time": snap.created,
        "run_id": run_id or str(uuid.uuid4()),
        "profile": profile,
    }
    log = root / SNAPSHOT_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return record

