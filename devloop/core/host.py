"""The session host: the one owner of a Session's lifetime and of who hears its events.

Front ends (`devloop run` / `watch` through `commands/_common.py`, the `up` app) never build or
close a Session themselves: they make a host, subscribe their listener and let the host create,
start and close the Session. The host resolves nothing (config, profile and file come from the
caller); it owns:

- the lifetime: `create()` builds the Session with the host's `publish` as its one `emit`,
  `start()` starts it, `close()` stops it (idempotent);
- the fan-out: every listener gets every event, in subscription order; a listener that raises is
  reported (a `Diagnostic` to the others) and dropped, and the loop goes on.

This is where sessions that outlive a front end will live: a local control socket (served next
to the Session, its connections subscribed as listeners that send `event.to_json()`, read back
with `events.from_json`) and attach / detach (a front end that goes is an unsubscribe, not a
`close()`). Those come next; nothing here assumes one front end for life.
"""

from __future__ import annotations

import asyncio
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from devloop.core import events as ev

if TYPE_CHECKING:  # the Session (and the targets it imports) load when a host creates one
    from devloop.core.session import Session
    from devloop.core.targets.base import TargetInfo

MakeSession = Callable[[ev.Emit], "Session"]
"""emit -> a new Session (or a stand-in with start / close) whose events go to `emit`."""


class SessionHost:
    """Owns one Session: creates, starts and closes it, and fans its events out to listeners."""

    def __init__(self, make_session: MakeSession, *, control: tuple[Path, str] | None = None,
                 recorder: Any = None) -> None:
        """`control`: (project root, profile) -- serve the local control socket there once
        started, so `devloop sync` / `run` hand their work to this live session. `recorder`: a
        core.runs RunRecorder that hears every event first; close / detach wait for its records."""
        self._make_session = make_session
        self._control_at = control
        self._control: Any = None
        self._session: Session | None = None
        self._listeners: list[ev.Emit] = []
        self._closed = False
        self.recorder = recorder  # hears every event before the listeners (not one of them)
        if recorder is not None:
            recorder.bind(lambda: self._session, self.publish)

    @classmethod
    def for_profile(cls, config: Any, profile: Any, file: Path | None, *, verbose: int = 0,
                    mode: str = "plain", forward: tuple[str, ...] = ()) -> SessionHost:
        """A host for a Session on `profile` running `file` (all resolved by the caller);
        `mode` as Session's: "session" (the kernel outlives this front end), "auto", "plain";
        `forward`: the command line's `--forward` specs (over [ports] and the profile's)."""

        def make(emit: ev.Emit) -> Session:
            from devloop.core.session import Session

            return Session(config, profile, file, emit, verbose=verbose, mode=mode, forward=tuple(forward))

        from devloop.core.runs.record import RunRecorder

        return cls(make, control=(Path(config.root), profile.name) if mode == "session" else None,
                   recorder=RunRecorder(config, profile, file, mode=mode))

    # ----------------------------------------------------------------- listeners
    def subscribe(self, listener: ev.Emit) -> Callable[[], None]:
        """`listener(event)` gets every event from now on; returns its unsubscribe."""
        self._listeners.append(listener)
        return lambda: self.unsubscribe(listener)

    def unsubscribe(self, listener: ev.Emit) -> None:
        """Stop sending events to `listener` (no error if it was already gone)."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    @property
    def listeners(self) -> tuple[ev.Emit, ...]:
        return tuple(self._listeners)

    def publish(self, event: ev.Event) -> None:
        """Send `event` to every listener: the Session's `emit`, and the front ends' own events
        (a run's GPU summary) take the same path. A listener that raises is dropped and the
        others are told why; one broken front end never stops the loop or the rest."""
        failed: list[tuple[ev.Emit, BaseException]] = []
        recorder = (self.recorder,) if self.recorder is not None else ()
        for listener in recorder + tuple(self._listeners):  # a listener may (un)subscribe while called
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - any listener bug is contained here
                failed.append((listener, exc))
        for listener, exc in failed:
            if listener is self.recorder:
                self.recorder = None  # runs go on unrecorded; the warning below says why
            self.unsubscribe(listener)
            self.publish(ev.Diagnostic(level="warning", message=(
                f"an event listener ({_name(listener)}) failed on a {event.name!r} event and was "
                f"removed: {type(exc).__name__}: {exc}")))
            self.publish(ev.Diagnostic(level="debug", message="".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()))

    # ----------------------------------------------------------------- lifetime
    @property
    def session(self) -> Session | None:
        """The Session once created (None before `create()`)."""
        return self._session

    @property
    def closed(self) -> bool:
        return self._closed

    def create(self) -> Session:
        """Build the Session (once); its events go through `publish`. Errors building it (an
        unknown target kind) reach the caller as they are."""
        if self._closed:
            raise RuntimeError("this session host was closed; make a new one")
        if self._session is None:
            self._session = self._make_session(self.publish)
        return self._session

    async def start(self) -> TargetInfo:
        """Create the Session if needed and start it (target, first sync, kernel); then serve
        the control socket when this host has one."""
        session = self.create()
        info = await session.start()
        if self._control_at is not None and self._control is None:
            from devloop.core.control import ControlServer, socket_path

            server = ControlServer(socket_path(*self._control_at), {"sync": self._handle_sync,
                                                                     "run": self._handle_run})
            try:
                await server.start()
                self._control = server
            except OSError as exc:  # hand-offs are a speed-up: the session works without them
                self.publish(ev.Diagnostic(level="warning", message=f"no control socket: {exc}"))
        return info

    async def _handle_sync(self, request: dict, send: Callable[[dict], Any]) -> None:
        """`devloop sync` handed over: the live Syncer sends what changed."""
        done: list[ev.SyncDone] = []
        listener = lambda event: done.append(event) if isinstance(event, ev.SyncDone) else None  # noqa: E731
        self.subscribe(listener)
        try:
            plan = await self.create().sync_now()
        finally:
            self.unsubscribe(listener)
        result = done[-1].to_json() if done else {"files": 0, "bytes": 0, "deleted": 0, "ms": 0.0}
        await send({"ok": True, **result, "copies": list(plan.copies) if plan is not None else [],
                    "deletes": list(plan.deletes) if plan is not None else []})

    async def _handle_run(self, request: dict, send: Callable[[dict], Any]) -> None:
        """`devloop run` handed over: the outdated cells run in the live kernel; its events go
        back as JSON lines while they run. A run of another file, or with other `-- ARGS`, than
        the live front end's is refused with the reason (it would run what the user did not ask)."""
        refusal = self._run_refusal(request)
        if refusal:
            await send({"ok": False, "error": refusal})
            return
        queue: asyncio.Queue = asyncio.Queue()
        listener = queue.put_nowait
        self.subscribe(listener)

        async def pump() -> None:
            while (event := await queue.get()) is not None:  # None: the run is over
                await send(event.to_json())

        pumping = asyncio.create_task(pump())
        try:
            done = await self.create().run_outdated()
            if self.recorder is not None:  # its run record reaches the handing `devloop run` too
                await self.recorder.flush()
        finally:
            self.unsubscribe(listener)
            queue.put_nowait(None)
        await pumping  # every event of the run is sent before its end
        await send({"done": done.exit_code})

    def _run_refusal(self, request: dict) -> str:
        session = self.create()
        live = getattr(session, "file", None)
        asked = request.get("file")
        asked_path = Path(asked).resolve() if asked else None
        if asked_path is not None and live is not None and asked_path != live:
            if asked_path.is_relative_to(session.root):
                asked = asked_path.relative_to(session.root).as_posix()
            return (f"a live session of this profile runs {session.relpath}, not {asked}: the run would "
                    f"happen in its kernel -- fix: run {session.relpath}, stop the session first "
                    f"(devloop stop -p {session.profile.name}), or use another profile")
        args = request.get("args")
        if args is not None and live is not None and [str(a) for a in args] != session.script_args:
            running = " ".join(session.script_args) or "no arguments"
            return (f"a live session of this profile runs {session.relpath} with {running}, not with "
                    f"{' '.join(map(str, args)) or 'no arguments'} -- fix: stop it first "
                    f"(devloop stop -p {session.profile.name}) to run with other arguments")
        return ""

    async def _stop_control(self) -> None:
        if self._control is not None:
            control, self._control = self._control, None
            await control.close()

    async def close(self) -> None:
        """Close the Session (kernel and target stopped). Idempotent; the listeners stay
        subscribed, so the session's last events (`target stopped`) still reach them."""
        if self._closed:
            return
        self._closed = True
        await self._stop_control()
        try:
            if self._session is not None:
                await self._session.close()
        finally:
            if self.recorder is not None:
                await self.recorder.drain()

    async def detach(self) -> None:
        """Leave the Session's kernel (and its container / pod) running on the target for the
        next front end; a Session without a session kernel is closed instead. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stop_control()
        try:
            if self._session is not None:
                await self._session.detach()
        finally:
            if self.recorder is not None:
                await self.recorder.drain("detached")

    async def __aenter__(self) -> SessionHost:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _name(listener: Any) -> str:
    name = getattr(listener, "__qualname__", None) or type(listener).__qualname__
    return str(name)
