"""The Target protocol: where code runs (this machine, a container, an SSH host, a pod).

A target knows how to start an environment, run a process in it with stdin/stdout attached
(`spawn`), and stop it. Everything else -- syncing files, running the kernel -- is built on
`spawn` plus the stdlib-only agent bundle (`devloop.core.agent_bundle`), so a new target only has
to provide a process channel: `devloop.core.sync.syncer` streams files into the agent's `receive`
mode over `spawn` for every target (this module never imports the sync code).

What a target can do beyond that is declared here with a default that does nothing (`needs_sync`,
`progress`, `follow_logs`, `explain_exit`, `doctor_checks`, `native_ports` / `open_port`); targets override what they have, and
callers call them directly.

Blocking SDKs (docker, kubernetes, paramiko) run in threads (`asyncio.to_thread`); the protocol
itself is asyncio.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.ports.stream import PortStream


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
    #: what the receiver chose not to do, in words (a folder the target turned into a link)
    warnings: tuple[str, ...] = ()


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

    async def read(self, n: int = 65536) -> bytes:
        """Up to `n` bytes of stdout as they arrive; b"" at EOF. A forwarded port's relay
        carries binary data this way. Default: a line at a time (right, but slow for binary
        data); the channels override it."""
        return await self.readline()

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
    #: False where the code already is where it runs (local, in place): nothing is synced.
    needs_sync: bool = True
    #: Set by the session before `start()`: a target that starts slowly (a pod being scheduled,
    #: an image pulled) reports each step with it as one line of text. Calling it is optional.
    progress: Callable[[str], None] | None = None
    #: Set by the session before `start()` when a session kernel may live in an environment a
    #: previous front end left running: `start()` then reuses it (as `keep: true` does).
    adopt_existing: bool = False
    #: True where a session kernel's idle stop should end the environment too (its container's
    #: init gets SIGTERM): a container or pod holding a GPU stops costing money.
    idle_stop_ends_environment: bool = False

    #: True where `open_port` reaches a port inside the environment by the target's own means
    #: (SSH: a direct-tcpip channel on the session's transport), measured at least as fast as
    #: the agent's `connect` relay over `spawn` that every other target uses for a forwarded
    #: port (benchmarks/bench_ports.py).
    native_ports: bool = False

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

    async def snapshot(self) -> Snapshot:
        raise TargetError(f"the {self.kind} target cannot take snapshots")

    async def alive(self) -> bool:
        """Whether the environment still exists (container/pod not removed from outside)."""
        return True

    async def follow_logs(self, on_text: Callable[[str], None]) -> None:
        """Stream the environment's own log (a pod's main container) to `on_text` until the
        target stops. The session runs it as a task after `start()`; default: none, returns at once."""
        return None

    async def explain_exit(self, code: int | None) -> str | None:
        """Why a process in the target ended with `code`, when the target knows better than the
        code itself (an OOM kill naming the memory limit); None: nothing to add."""
        return None

    async def open_port(self, host: str, port: int) -> "PortStream":
        """A byte stream to host:port as the environment sees it, where `native_ports`;
        `devloop.core.ports.stream.PortRefused` when nothing listens there."""
        raise TargetError(f"the {self.kind} target has no native port forwarding",
                          hint="forwarded ports go through the agent's connect relay there")

    async def doctor_checks(self) -> Sequence[tuple[str, bool, str]]:
        """Extra checks `devloop doctor` reports for this kind: (name, ok, detail) each."""
        return ()

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop and remove what start() created, unless the profile says keep. Idempotent."""

    async def detach(self) -> None:
        """Let go of the target but leave the environment running (a session kernel lives in
        it): close this process's connections, remove nothing, kill nothing. Default: nothing
        to let go of (the local target)."""
        return None
