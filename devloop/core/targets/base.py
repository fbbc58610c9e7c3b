"""The Target protocol: where code runs (this machine, a container, an SSH host, a pod).

A target knows how to start an environment, run a process in it with stdin/stdout attached
(`spawn`), and stop it. Everything else -- syncing files, running the kernel -- is built on
`spawn` plus the stdlib-only agent bundle (`devloop.core.agent_bundle`), so a new target only has
to provide a process channel. Targets may override `sync` with a faster path.

Blocking SDKs (docker, kubernetes, paramiko) run in threads (`asyncio.to_thread`); the protocol
itself is asyncio.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.sync.plan import SyncPlan


class TargetError(Exception):
    """A target failed in a way the user can act on. `str()` is the one-line message + fix."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class ConnectionLost(TargetError):
    """The link to the target dropped (container removed, ssh dropped, pod deleted)."""


@dataclass(frozen=True)
class TargetInfo:
    """What `start()` found: shown in the header, recorded by promote."""

    kind: str
    id: str  # container id, pod name, host name, "local"
    workdir: str  # absolute path of the remote workdir, where the code is synced and runs
    python: str  # the interpreter used for the agent ("python3", "/usr/bin/python3.11")
    image: str = ""  # image reference as configured
    image_digest: str = ""  # repo digest or image id, when known
    gpus_requested: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncStats:
    files: int
    bytes: int
    deleted: int
    ms: float


@dataclass(frozen=True)
class Snapshot:
    """What promote pins: the image (by digest / id) that holds the working setup."""

    image: str
    image_id: str
    created: str  # ISO-8601 UTC
    details: Mapping[str, Any] = field(default_factory=dict)


class Channel(abc.ABC):
    """A process running in the target: its stdin, its stdout as lines, a signal, its exit code.

    stderr is collected separately (`stderr_tail`) for error messages: the agent speaks its
    protocol on stdout only.
    """

    @abc.abstractmethod
    async def send(self, data: bytes) -> None:
        """Write bytes to the process's stdin."""

    @abc.abstractmethod
    async def close_stdin(self) -> None:
        """Signal EOF on stdin (the tar receiver finishes on it)."""

    @abc.abstractmethod
    async def readline(self) -> bytes:
        """One line of stdout including the newline; b"" at EOF."""

    @abc.abstractmethod
    async def wait(self) -> int:
        """Wait for exit; the exit code (negative signal number where the OS says so)."""

    @abc.abstractmethod
    async def kill(self) -> None:
        """Stop the process (and what it started) now. Safe to call twice."""

    def stderr_tail(self) -> str:
        """The last few KiB the process wrote to stderr (for error messages)."""
        return ""


class Target(abc.ABC):
    """One place where code runs. Created from a profile by `devloop.core.targets.create_target`."""

    kind: str = "?"
    #: False where the code already is where it runs (local, in place): the session skips sync.
    needs_sync: bool = True

    @abc.abstractmethod
    async def start(self) -> TargetInfo:
        """Find or create the environment, put the agent bundle in place; idempotent."""

    @abc.abstractmethod
    async def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Channel:
        """Start a process in the target with stdin/stdout piped."""

    @property
    @abc.abstractmethod
    def info(self) -> TargetInfo:
        """The TargetInfo of the last successful start()."""

    @abc.abstractmethod
    def agent_argv(self, mode: str, *args: str) -> list[str]:
        """argv that runs the agent bundle in `mode` ("kernel", "receive", "manifest") there."""

    async def sync(self, plan: "SyncPlan", source_root: str, on_progress: Any = None,
                   keep_open: bool = False) -> SyncStats:
        """Send a sync plan: default is a tar stream into the agent's `receive` mode.

        `on_progress(files_done, files_total, bytes_done, bytes_total)` is called as it goes;
        `keep_open` keeps one receiver running for the next syncs (the watch loop)."""
        from devloop.core.sync.transport import sync_via_agent

        return await sync_via_agent(self, plan, source_root, on_progress, keep_open=keep_open)

    async def remote_manifest(self) -> dict | None:
        """The manifest the remote says it has (None when it has none): used to resend only
        the difference after a reconnect or a restarted container."""
        from devloop.core.sync.transport import fetch_remote_manifest

        return await fetch_remote_manifest(self)

    async def snapshot(self) -> Snapshot:
        raise TargetError(f"the {self.kind} target cannot take snapshots")

    async def alive(self) -> bool:
        """Whether the environment still exists (container/pod not removed from outside)."""
        return True

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop and remove what start() created, unless the profile says keep. Idempotent."""
