"""The session host on a real Session (local profile, real kernel): it creates, starts and closes
the Session, and every listener gets every event -- a broken listener is dropped, never the loop."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.core.config import load_config
from devloop.core.host import SessionHost
from devloop.core.session import Session

NB = """\
    # %% a
    x = 20
    print("a ran")
    # %% b
    print("x+1 =", x + 1)
    """


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, kind: type, **match: object) -> list:
        return [e for e in self.events if isinstance(e, kind)
                and all(getattr(e, k) == v for k, v in match.items())]

    def text(self) -> str:
        return "".join(e.text for e in self.of(ev.Output))


def make_host(tmp_path: Path) -> SessionHost:
    f = tmp_path / "nb.py"
    f.write_text(textwrap.dedent(NB))
    config = load_config(tmp_path)
    return SessionHost.for_profile(config, config.profile(None), f)


async def test_every_listener_gets_every_event_of_the_session_in_order(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    first, second = Recorder(), Recorder()
    host.subscribe(first)
    host.subscribe(second)
    assert host.session is None
    async with host:
        info = await host.start()
        assert isinstance(host.session, Session) and info.kind == "local"
        done = await host.session.run_all()
        assert done is not None and done.ok
        host.publish(ev.GpuSummary(gpus=({"index": 0, "peak_mem_gib": 1.0},)))  # a front end's own event
    assert first.events == second.events
    assert "x+1 = 21" in first.text()
    assert [e.state for e in first.of(ev.TargetState)] == ["starting", "ready", "stopped"]
    assert first.of(ev.GpuSummary) and first.events.index(first.of(ev.GpuSummary)[0]) < \
        first.events.index(first.of(ev.TargetState, state="stopped")[0])


async def test_a_listener_that_raises_is_dropped_and_the_run_goes_on(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    before, after = Recorder(), Recorder()
    seen: list[ev.Event] = []

    def broken(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, ev.CellStart):
            raise RuntimeError("widget gone")

    host.subscribe(before)
    host.subscribe(broken)
    host.subscribe(after)
    try:
        await host.start()
        done = await host.session.run_all()
    finally:
        await host.close()
    assert done is not None and done.ok and done.cells_run == 2
    assert broken not in host.listeners and host.listeners == (before, after)
    assert isinstance(seen[-1], ev.CellStart) and seen.count(seen[-1]) == 1  # nothing after the raise
    for rec in (before, after):
        warning = rec.of(ev.Diagnostic, level="warning")
        assert len(warning) == 1 and "broken" in warning[0].message and "widget gone" in warning[0].message
        assert "x+1 = 21" in rec.text() and rec.of(ev.TargetState, state="stopped")
        assert any(d.message.startswith("Traceback") and "widget gone" in d.message
                   for d in rec.of(ev.Diagnostic, level="debug"))  # where it broke, for -v


async def test_unsubscribed_listeners_hear_nothing_more(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    stays, leaves, joins_late = Recorder(), Recorder(), Recorder()
    host.subscribe(stays)
    unsubscribe = host.subscribe(leaves)

    def subscribes_another(event: ev.Event) -> None:
        if isinstance(event, ev.KernelReady):  # (un)subscribing while events are sent is allowed
            host.subscribe(joins_late)
            host.unsubscribe(subscribes_another)

    host.subscribe(subscribes_another)
    try:
        await host.start()
        unsubscribe()
        unsubscribe()  # twice: no error
        await host.session.run_all()
    finally:
        await host.close()
    assert leaves.of(ev.TargetState, state="ready") and not leaves.of(ev.CellStart)
    assert not joins_late.of(ev.KernelReady) and joins_late.of(ev.TargetState, state="ready")
    assert stays.of(ev.CellStart) and joins_late.of(ev.CellStart) == stays.of(ev.CellStart)
    assert host.listeners == (stays, joins_late)


async def test_the_host_owns_one_session_and_closes_it_once(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    rec = Recorder()
    host.subscribe(rec)
    session = host.create()
    assert host.create() is session and host.session is session
    await host.start()
    assert host.session is session and session.kernel is not None and session.kernel.alive
    await host.close()
    await host.close()  # idempotent
    assert host.closed and not session.kernel.alive
    assert len(rec.of(ev.TargetState, state="stopped")) == 1
    with pytest.raises(RuntimeError, match="closed"):
        host.create()


async def test_closing_a_host_that_never_created_a_session_is_a_no_op() -> None:
    made: list[object] = []
    host = SessionHost(lambda emit: made.append(emit))
    await host.close()
    assert host.closed and host.session is None and made == []


WAITS_FOR_GO = """\
    # %% waits
    import os, time
    for _ in range(6000):  # until the test says go (bounded)
        if os.path.exists("go"):
            break
        time.sleep(0.01)
    print("after go")
    # %% later
    open("later.txt", "w").close()
    """


def test_headless_run_ends_quietly_when_its_reader_leaves(tmp_path: Path) -> None:
    """`devloop run --json | head -1`: the reporter's broken pipe is not just a dropped listener
    -- the run stops there (no later cell runs), the target is cleaned up and the exit is 141."""
    import os
    import subprocess

    from tests.clitools import DEVLOOP

    (tmp_path / "nb.py").write_text(textwrap.dedent(WAITS_FOR_GO))
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    proc = subprocess.Popen(DEVLOOP + ["run", "nb.py", "--json"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if '"event": "cell_start"' in line:
                break
        proc.stdout.close()  # the reader leaves while cell 0 runs
        (tmp_path / "go").touch()
        assert proc.wait(timeout=60) == 141, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not (tmp_path / "later.txt").exists()
