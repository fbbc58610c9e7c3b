"""What the last probe of an SSH host found (interpreter, workdir, agent bundle), kept locally.

An attach pays one exec per round trip, and on a host whose `python3` is a wrapper (a pyenv
shim) each costs ~0.3 s. With the facts of the last probe at hand the target opens the relay
beside the probe instead of after it; the probe still runs, and when it disagrees the early
channel is dropped and the work redone. So a stale file costs one exec, never a wrong run.
Kept in `.devloop/targets/<profile>.json` (0600), written whole through a temp file.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

FOLDER = Path(".devloop") / "targets"


def facts_path(root: Path, profile: str) -> Path:
    return root / FOLDER / f"{profile}.json"


def load(root: Path, profile: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The facts recorded for exactly this key (host, user, port, python, workdir, bundle), else None."""
    try:
        data = json.loads(facts_path(root, profile).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("facts"), dict):
        return None
    return data["facts"]


def save(root: Path, profile: str, key: dict[str, Any], facts: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written only costs the next attach one exec."""
    path = facts_path(root, profile)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "facts": facts}, f)
        os.replace(tmp, path)
    except OSError:
        pass


def forget(root: Path, profile: str) -> None:
    try:
        facts_path(root, profile).unlink()
    except OSError:
        pass
