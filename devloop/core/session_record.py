"""What this machine knows about the sessions it started: `.devloop/sessions/PROFILE.json`.

One small JSON file per profile (0600, in a 0700 folder, written without following a planted
link): the session id, its secret (a front end proves with it that the session is its own),
the target it lives on, when it started and the agent bundle it runs. `devloop watch`, `up`
and `run` read it to attach instead of starting afresh; `devloop sessions` lists these files;
`devloop stop` removes them.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass
class SessionRecord:
    profile: str
    session: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    kind: str = ""
    target: str = ""  # container / pod / host id
    workdir: str = ""
    started: float = field(default_factory=time.time)
    agent: str = ""  # agent bundle sha256 of the devloop that started it
    file: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sessions_dir(root: Path) -> Path:
    return Path(root) / ".devloop" / "sessions"


def _private_dir(path: Path) -> None:
    for folder in (path.parent, path):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = folder.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(f"{folder} is not a real folder (a link or a file): remove it")
    os.chmod(path, 0o700)


def load(root: Path, profile: str) -> SessionRecord | None:
    """The record for `profile`, or None (none, unreadable, or not ours to trust)."""
    path = sessions_dir(root) / f"{profile}.json"
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        data = json.loads(os.read(fd, 1 << 20).decode("utf-8"))
        known = {k: v for k, v in data.items() if k in SessionRecord.__dataclass_fields__}
        return SessionRecord(**known)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def save(root: Path, record: SessionRecord) -> Path:
    folder = sessions_dir(root)
    _private_dir(folder)
    path = folder / f"{record.profile}.json"
    tmp = folder / f".{record.profile}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(record.to_json(), indent=1).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def remove(root: Path, profile: str) -> None:
    try:
        (sessions_dir(root) / f"{profile}.json").unlink()
    except FileNotFoundError:
        pass


def all_records(root: Path) -> list[SessionRecord]:
    out = []
    folder = sessions_dir(root)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        rec = load(root, path.stem)
        if rec is not None:
            out.append(rec)
    return out
