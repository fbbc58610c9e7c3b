"""The local target: this machine, the embedded default that works with nothing installed.

Without `workdir` the code runs in place (no sync at all); with `workdir:` the project is synced
into that folder through the agent's receive mode, exactly as a remote would be: the reference
the other targets are tested against.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from devloop.core.agent_bundle import UnsafeCache, unpacked_bundle
from devloop.core.config import local_workdir_problem, resolve_local_workdir
from devloop.core.targets.base import Channel, Target, TargetError, TargetInfo

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Config, Profile

STREAM_LIMIT = 64 * 1024 * 1024  # one protocol line may carry a 64 KiB chunk, JSON-escaped


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/devloop (a relative XDG_CACHE_HOME is ignored, as the spec says);
    unpacked_bundle makes it 0700 and refuses one that is a link or someone else's."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "devloop"


GROUP_GRACE_S = 1.0


async def end_group(pgid: int, grace: float = GROUP_GRACE_S) -> None:
    """SIGTERM what is left of process group `pgid`, SIGKILL it after `grace` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = asyncio.get_running_loop().time() + grace
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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

    async def read(self, n: int = 65536) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.read(n)

    async def wait(self) -> int:
        code = await self.proc.wait()
        try:
            await asyncio.wait_for(self._stderr_task, 1)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            pass
        return code

    async def kill(self) -> None:
        """Stop the process and its group -- also when the process itself already ended: a
        child a cell forked (one that ignores SIGTERM, say) must not outlive devloop. The group
        gets SIGTERM, and SIGKILL after GROUP_GRACE_S."""
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                pass
        await end_group(self.proc.pid)
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
        self._workdir_error: str | None = None
        if self.in_place:
            self.workdir = Path(config.root).resolve()
        else:
            try:
                self.workdir = resolve_local_workdir(profile.workdir, config.root)
            except (OSError, ValueError, RuntimeError) as exc:  # reported by start()
                self.workdir = Path(config.root).resolve()
                self._workdir_error = (f"cannot be resolved: "
                                       f"{getattr(exc, 'strerror', None) or exc}")
        # a profile's python wins over the project's [run].python (as on docker)
        self.python = profile.python or config.run.python or sys.executable
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
            problem = self._workdir_error or local_workdir_problem(self.workdir, self.config.root)
            if problem:
                raise TargetError(
                    f"profile {self.profile.name!r}: workdir {str(self.workdir)[:200]} {problem}",
                    hint="point `workdir:` at a folder of its own outside the project, or remove "
                    "it to run in place",
                )
            try:
                self.workdir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TargetError(
                    f"profile {self.profile.name!r}: cannot create workdir {self.workdir}: "
                    f"{exc.strerror}",
                    hint="point `workdir:` at a folder you can write") from None
        self._check_python()
        try:
            self._bundle = await asyncio.to_thread(unpacked_bundle, cache_dir())
        except UnsafeCache as exc:
            raise TargetError(exc.message, hint=exc.hint) from None
        except OSError as exc:
            raise TargetError(f"cannot prepare the agent in {cache_dir()}: {exc.strerror}",
                              hint="make it writable, or set XDG_CACHE_HOME to a folder of "
                              "yours") from None
        self._info = TargetInfo(
            kind="local", id=os.uname().nodename, workdir=str(self.workdir), python=self.python,
            details={"in_place": self.in_place},
        )
        return self._info

    def _check_python(self) -> None:
        """The interpreter exists and can be run (a non-executable gave a traceback).

        A relative path is looked up where it will run (the workdir); in a synced workdir it
        may only arrive with the first sync, so there only a present non-executable fails."""
        python = self.python
        where = ("profile " + repr(self.profile.name) if self.profile.python
                 else "[run] in devloop.toml" if self.config.run.python else "devloop")
        hint = (f"set `python:` in profile {self.profile.name!r} (or [run].python) to an "
                "executable interpreter, e.g. python3")
        if "/" not in python:
            if shutil.which(python) is None:
                raise TargetError(f"python {python!r} (from {where}) is not on PATH", hint=hint)
            return
        path = Path(python) if os.path.isabs(python) else self.workdir / python
        if not path.exists():
            if os.path.isabs(python) or self.in_place:
                raise TargetError(f"python {python!r} (from {where}) does not exist", hint=hint)
            return
        if not path.is_file() or not os.access(path, os.X_OK):
            raise TargetError(f"python {python!r} (from {where}) is not an executable file",
                              hint=hint)

    def agent_argv(self, mode: str, *args: str) -> list[str]:
        if self._bundle is None:
            raise TargetError("the local target has not been started")
        # receive/manifest are stdlib-only: -S skips site-packages (~70 ms less per start)
        flags = ["-u", "-S"] if mode in ("receive", "manifest", "connect") else ["-u"]
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

    async def stop(self) -> None:
        return None
