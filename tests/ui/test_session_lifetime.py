"""`devloop up`'s session lifetime keys against the real engine: `d` leaves the session kernel
running on the target (local profile, mode "session", as `devloop up` makes it), a second app
attaches to it with every cell's state kept, `q` (or ctrl+c) while a cell runs asks first. The
session states the app shows (attached, reconnecting, reattached, replayed output) are checked
with fixed event feeds too. Waits poll with a generous deadline; nothing asserts on time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.core import session_ops, session_record
from devloop.core.config import load_config
from devloop.core.session import Session
from devloop.ui.app import DevloopApp
from devloop.ui.widgets.dialogs import StopConfirm
from tests.ui import fake_events
from tests.ui.test_behaviour import FOREVER, SIZE, Recorder, make_project, until

pytestmark = pytest.mark.timeout(180)


def session_app(root: Path, rec: Recorder) -> DevloopApp:
    """The app as `devloop up` / `devloop attach` build it: Sessions in mode "session"."""
    config = load_config(root)

    def factory(name: str, emit: ev.Emit) -> Session:
        return Session(config, config.profile(name), root / "nb.py", rec.wrap(emit), mode="session")

    return DevloopApp(config=config, profile="local", file="nb.py", session_factory=factory)


@pytest.fixture
def project(tmp_path: Path):
    """A project whose session is always ended at the end of the test, passed or not."""
    roots: list[Path] = []

    def make(source: str | None = None) -> Path:
        root = make_project(tmp_path, source) if source else make_project(tmp_path)
        roots.append(root)
        return root

    yield make
    for root in roots:
        if session_record.load(root, "local") is not None:
            asyncio.run(session_ops.stop(load_config(root), "local"))


async def exits(app: DevloopApp) -> None:
    await until("the app exits", lambda: app.return_code is not None)


async def test_d_detaches_and_the_next_app_attaches_with_the_state_kept(project) -> None:
    root = project()
    rec = Recorder()
    app = session_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the first pass", lambda: rec.of(ev.RunDone))
        pid = rec.of(ev.KernelReady)[-1].pid
        app.simulate_key("d")  # the key itself (pilot.press would wait for an exited app's screen)
        await exits(app)
    assert rec.of(ev.TargetState, state="detached") and not rec.of(ev.TargetState, state="stopped")
    assert "devloop attach -p local" in app.exit_message and "devloop stop -p local" in app.exit_message
    assert session_record.load(root, "local") is not None, "the session is left running"

    rec2 = Recorder()
    app2 = session_app(root, rec2)
    async with app2.run_test(size=SIZE) as pilot:
        await until("the first pass of the attached app", lambda: rec2.of(ev.RunDone))
        await pilot.pause()
        attached = rec2.of(ev.TargetState, state="attached")
        assert attached and "3 of 3 cells" in attached[-1].message
        assert rec2.of(ev.KernelReady)[-1].pid == pid, "the same kernel"
        assert not rec2.of(ev.CellStart), "nothing reruns: every cell is up to date in the session"
        assert app2.cell_states == {0: "ok", 1: "ok", 2: "ok"}
        assert app2.header_bar.session == "attached · 3/3 kept"
        assert any(line.text.startswith("attached to the running session") for line in app2.store.all.lines)
        app2.simulate_key("q")  # no cell running: q stops at once
        await exits(app2)
    assert rec2.of(ev.TargetState, state="stopped")
    assert session_record.load(root, "local") is None, "q ends the session"
    assert app2.exit_message == ""


async def test_q_while_a_cell_runs_asks_and_detach_leaves_the_cell_running(project) -> None:
    root = project(FOREVER)
    rec = Recorder()
    app = session_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("cell 1 running", lambda: app.cell_states.get(1) == "running")
        await pilot.press("q")
        await until("the question", lambda: isinstance(app.screen, StopConfirm))
        await pilot.press("escape")  # cancel: nothing stops
        await pilot.pause()
        assert not isinstance(app.screen, StopConfirm) and app.return_code is None
        assert app.cell_states[1] == "running" and not rec.of(ev.TargetState, state="stopped")
        await pilot.press("q")
        await until("the question again", lambda: isinstance(app.screen, StopConfirm))
        app.simulate_key("d")  # detach instead
        await exits(app)
    assert rec.of(ev.TargetState, state="detached") and not rec.of(ev.TargetState, state="stopped")
    assert "devloop attach -p local" in app.exit_message

    rec2 = Recorder()
    app2 = session_app(root, rec2)
    async with app2.run_test(size=SIZE) as pilot:
        await until("attached", lambda: rec2.of(ev.TargetState, state="attached"))
        await until("cell 1 still running (inherited)", lambda: app2.cell_states.get(1) == "running")
        assert app2.cell_states.get(0) == "ok" and not rec2.of(ev.CellStart)
        assert app2.header_bar.session == "attached · 1/2 kept"
        # ctrl+c asks the same question; ctrl+c again while asked stops
        await pilot.press("ctrl+c")
        await until("the question", lambda: isinstance(app2.screen, StopConfirm))
        app2.simulate_key("ctrl+c")
        await exits(app2)
    assert rec2.of(ev.TargetState, state="stopped")
    assert session_record.load(root, "local") is None


async def test_y_in_the_question_stops(project) -> None:
    root = project(FOREVER)
    rec = Recorder()
    app = session_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("cell 1 running", lambda: app.cell_states.get(1) == "running")
        await pilot.press("q")
        await until("the question", lambda: isinstance(app.screen, StopConfirm))
        app.simulate_key("y")
        await exits(app)
    assert rec.of(ev.TargetState, state="stopped") and not rec.of(ev.TargetState, state="detached")
    assert session_record.load(root, "local") is None and app.exit_message == ""


def replay_marks(app: DevloopApp, cell: int) -> list[tuple[int, str]]:
    """(position in the cell's log, text) of the markers before replayed output."""
    return [(i, line.text) for i, line in enumerate(app.store.ring(cell)) if line.stream == "replay"]


async def test_attached_session_is_shown_with_one_marker_before_replayed_output() -> None:
    app = DevloopApp(profile="docker-gpu", file="train.py")
    async with app.run_test(size=SIZE) as pilot:
        app.feed(fake_events.attached())
        await pilot.pause()
        assert app.header_bar.state == "ready" and app.header_bar.session == "attached · 3/5 kept"
        texts = [line.text for line in app.store.ring(3)]
        assert replay_marks(app, 3) == [(0, "(while detached: replayed from the target)")]
        assert texts[1] == "epoch  1  loss 2.5000" and texts[-1] == "epoch  9  loss 0.2778"
        assert app.running_cell == 3


async def test_reconnecting_then_reattached_marks_the_gap_once() -> None:
    app = DevloopApp(profile="docker-gpu", file="train.py")
    async with app.run_test(size=SIZE) as pilot:
        app.feed(fake_events.reconnecting())
        await pilot.pause()
        assert app.header_bar.state == "reconnecting" and app.header_bar.session == "kernel kept"
        assert app.header_bar.message == "reattaching (try 2)"
        logged = [line.text for line in app.store.all.lines if line.text.startswith("target reconnecting")]
        assert len(logged) == 1 and "the kernel goes on there" in logged[0]
        assert replay_marks(app, 3) == []
        app.feed(fake_events.reattached()[len(fake_events.reconnecting()):])
        await pilot.pause()
        assert app.header_bar.state == "ready" and app.header_bar.session == "reattached"
        texts = [line.text for line in app.store.ring(3)]
        marks = replay_marks(app, 3)
        assert [text for _, text in marks] == ["(while the link was down: replayed from the target)"]
        at = marks[0][0]
        assert texts[at + 1:] == ["epoch 16  loss 0.1563", "epoch 17  loss 0.1471", "epoch 18  loss 0.1389"]


GATED = """\
# %% setup
import os, time
print("before the gap")
while not os.path.exists("go"):
    time.sleep(0.02)
print("after 1")
print("after 2")
open("done", "w").close()
"""


async def test_output_from_while_detached_is_shown_once_under_a_marker(project) -> None:
    """The cell prints only once the app has detached (it waits for a file the test writes), so
    what the next app shows of it is the session's replay, under one "(while detached)" line."""
    root = project(GATED)
    rec = Recorder()
    app = session_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the cell's first line", lambda: any(
            line.text == "before the gap" for line in app.store.ring(0)))
        app.simulate_key("d")
        await exits(app)
    (root / "go").write_text("")
    await until("the cell ends on the target", lambda: (root / "done").exists())

    rec2 = Recorder()
    app2 = session_app(root, rec2)
    async with app2.run_test(size=SIZE) as pilot:
        await until("the replay", lambda: any(line.stream == "replay" for line in app2.store.all.lines))
        await until("the first pass", lambda: rec2.of(ev.RunDone))
        await pilot.pause()
        replayed = [e.text for e in rec2.of(ev.Output) if e.replayed]
        assert "".join(replayed) == "after 1\nafter 2\n"
        lines = [(line.stream, line.text) for line in app2.store.all.lines]
        at = lines.index(("replay", "(while detached: replayed from the target)"))
        assert [text for _, text in lines[at + 1:at + 3]] == ["after 1", "after 2"]
        assert sum(stream == "replay" for stream, _ in lines) == 1
        assert app2.cell_states == {0: "ok"} and not rec2.of(ev.CellStart)
        app2.simulate_key("q")
        await exits(app2)
