"""The local target: this machine, the embedded default that works with nothing installed.

Without `workdir` the code runs in place (no sync at all); with `workdir:` the project is synced
into that folder through the agent's receive mode, exactly as a remote would be: the reference
the other targets are tested against.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from devloop.core.agent_bundle import unpacked_bundle
from devloop.core.targets.base import Channel, SyncStats, Target, TargetError, TargetInfo

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Config, Profile
    from devloop.core.sync.plan import SyncPlan

STREAM_LIMIT = 64 * 1024 * 1024  # one protocol line may carry a 64 KiB chunk, JSON-escaped


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "devloop"


class ProcessChannel(Channel):
    """An asyncio subprocess in its own process group (kill() takes its children too)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._stderr = collections.deque(maxlen=64)
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            chunk = await self.proc.stderr.read(4096)
            if not chunk:
                return
            self._stderr.append(chunk.decode("utf-8", "replace"))

    async def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
            try:
                await self.proc.stdin.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                pass

    async def readline(self) -> bytes:
        assert self.proc.stdout is not None
        try:
            return await self.proc.stdout.readline()
        except ValueError:  # a line over STREAM_LIMIT: not the protocol
            return await self.proc.stdout.read(STREAM_LIMIT)

    async def wait(self) -> int:
        code = await self.proc.wait()
        try:
            await asyncio.wait_for(self._stderr_task, 1)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            pass
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                pass
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-4096:]


class LocalTarget(Target):
    kind = "local"

    def __init__(self, profile: "Profile", config: "Config") -> None:
        self.profile = profile
        self.config = config
        self.in_place = not profile.workdir
        if self.in_place:
            self.workdir = Path(config.root).resolve()
        else:
            wd = Path(os.path.expandvars(os.path.expanduser(profile.workdir)))
            self.workdir = (wd if wd.is_absolute() else Path(config.root) / wd).resolve()
        self.python = profile.python or sys.executable
        self._bundle: Path | None = None
        self._info: TargetInfo | None = None

    @property
    def needs_sync(self) -> bool:
        return not self.in_place

    @property
    def info(self) -> TargetInfo:
        if self._info is None:
            raise TargetError("the local target has not been started")
        return self._info

    async def start(self) -> TargetInfo:
        if not self.in_place:
            if self.workdir == Path(self.config.root).resolve() or Path(self.config.root).resolve() in self.workdir.parents:
                raise TargetError(
                    f"profile {self.profile.name!r}: workdir {self.workdir} is inside the project itself",
                    hint="point `workdir:` at a folder outside the project, or remove it to run in place",
                )
            self.workdir.mkdir(parents=True, exist_ok=True)
        self._bundle = await asyncio.to_thread(unpacked_bundle, cache_dir())
        self._info = TargetInfo(
            kind="local", id=os.uname().nodename, workdir=str(self.workdir), python=self.python,
            details={"in_place": self.in_place},
        )
        return self._info

    def agent_argv(self, mode: str, *args: str) -> list[str]:
        if self._bundle is None:
            raise TargetError("the local target has not been started")
        # receive/manifest are stdlib-only: -S skips site-packages (~70 ms less per start)
        flags = ["-u", "-S"] if mode in ("receive", "manifest") else ["-u"]
        return [self.python, *flags, str(self._bundle), mode, *args]

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> Channel:
        full_env = dict(os.environ)
        full_env.update(self.profile.env or {})
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=cwd or str(self.workdir), env=full_env,
                start_new_session=True, limit=STREAM_LIMIT,
            )
        except FileNotFoundError as exc:
            raise TargetError(
                f"cannot run {argv[0]!r} on this machine: {exc.strerror}",
                hint=f"set `python:` in profile {self.profile.name!r} to an interpreter that exists",
            ) from exc
        return ProcessChannel(proc)

    async def sync(self, plan: "SyncPlan", source_root: str, on_progress=None,
                   keep_open: bool = False) -> SyncStats:
        if self.in_place:
            return SyncStats(files=0, bytes=0, deleted=0, ms=0.0)
        return await super().sync(plan, source_root, on_progress, keep_open=keep_open)

    async def stop(self) -> None:
        return None
