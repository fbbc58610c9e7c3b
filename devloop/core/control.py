"""The local control socket of a live `devloop up` / `watch`: other commands hand work to it.

A running session host serves `.devloop/sessions/PROFILE.sock` (0600 in a 0700 folder; a path
too long for a unix socket falls back to a private folder under $XDG_RUNTIME_DIR or /tmp). One
JSON request per connection, answered by JSON lines:

- `{"op": "sync"}`: the host's Syncer sends what changed, with its warm scanner (stat cache in
  memory) and its kept receiver; one line `{"ok": true, "files", "bytes", "deleted", "ms"}`.
- `{"op": "run"}`: the cells that changed or are not ok run in the live kernel; every event of
  the session goes back as its `to_json()` line while it runs, then `{"done": EXIT_CODE}`.

`devloop sync` and `devloop run` try this first and take their cold path when nothing answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, AsyncIterator, Callable

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def socket_path(root: Path, profile: str) -> Path:
    path = Path(root).resolve() / ".devloop" / "sessions" / f"{profile}.sock"
    if len(str(path).encode()) <= MAX_SOCKET_PATH:
        return path
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"devloop-{os.getuid()}"
    digest = hashlib.sha256(f"{path}".encode()).hexdigest()[:16]
    return base / f"{digest}.sock"


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise OSError(f"{folder} is not a private folder of this user: remove it")
    os.chmod(folder, 0o700)


class ControlServer:
    """Serves one session host's control socket. `handlers[op](request, send)` do the work."""

    def __init__(self, path: Path, handlers: dict[str, Callable[[dict, Callable[[dict], Any]], Any]]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        _private_folder(self.path.parent)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()  # a dead front end's (a live one would have answered: see is_live)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(obj: dict) -> None:
            writer.write((json.dumps(obj) + "\n").encode())
            await writer.drain()

        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line)
            handler = self.handlers.get(str(request.get("op")))
            if handler is None:
                await send({"ok": False, "error": f"unknown op {request.get('op')!r}"})
            else:
                await handler(request, send)
        except (ValueError, asyncio.TimeoutError, ConnectionError):
            pass
        except Exception as exc:  # noqa: BLE001 - the caller gets the error, the host goes on
            with contextlib.suppress(Exception):
                await send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def request(root: Path, profile: str, payload: dict, timeout: float | None = None) -> AsyncIterator[dict]:
    """The answer lines of the live host for (root, profile); nothing when none is live."""
    path = socket_path(root, profile)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path), limit=1 << 26), 2)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        writer.write((json.dumps(payload) + "\n").encode())
        await writer.drain()
        while True:
            line = await (asyncio.wait_for(reader.readline(), timeout) if timeout else reader.readline())
            if not line:
                return
            yield json.loads(line)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def is_live(root: Path, profile: str) -> bool:
    """Cheap check before the cold path: is a control socket there at all?"""
    try:
        return stat.S_ISSOCK(socket_path(root, profile).lstat().st_mode)
    except OSError:
        return False
