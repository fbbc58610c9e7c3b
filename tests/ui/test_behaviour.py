"""Every key of `devloop up` against the real engine: `Session` on `local` profiles, real kernels
running real cells (no fakes). Waits poll for an event with a generous deadline; nothing asserts on
time."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from devloop.core import events as ev
from devloop.core.config import load_config
from devloop.core.session import Session
from devloop.ui.app import DevloopApp
from devloop.ui.widgets.dialogs import ProfilePicker, PromoteDialog
from tests.clitools import CELLS

pytestmark = pytest.mark.timeout(120)


FAILING = CELLS.replace('print("total", sum(doubled))', 'raise ValueError("bad total")')

FOREVER = textwrap.dedent(
    """\
    # %% setup
    import time
    print("ready")

    # %% spin
    while True:
        time.sleep(0.02)
    """
)

SIZE = (120, 40)


class Recorder:
    """Keeps every event the session emitted (then passes it to the app)."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def wrap(self, emit: ev.Emit) -> ev.Emit:
        def recording(event: ev.Event) -> None:
            self.events.append(event)
            emit(event)

        return recording

    def of(self, kind: type, **match) -> list:
        return [e for e in self.events if isinstance(e, kind)
                and all(getattr(e, k) == v for k, v in match.items())]


async def until(what: str, check: Callable[[], object], deadline: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        if loop.time() > end:
            raise AssertionError(f"gave up waiting for: {what}")
        await asyncio.sleep(0.05)


def make_project(tmp_path: Path, source: str = CELLS, copy_profile: bool = False) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "nb.py").write_text(source)
    (root / "devloop.toml").write_text('[project]\nname = "uitest"\nentry = "nb.py"\n')
    if copy_profile:
        (root / "profiles").mkdir()
        (root / "profiles" / "copy.yaml").write_text(f"kind: local\nworkdir: {tmp_path / 'work'}\n")
    return root


def make_app(root: Path, recorder: Recorder, profile: str = "local", **kwargs) -> DevloopApp:
    config = load_config(root)
    file = root / "nb.py"

    def factory(name: str, emit: ev.Emit) -> Session:
        return Session(config, config.profile(name), file, recorder.wrap(emit))

    return DevloopApp(config=config, profile=profile, file="nb.py", session_factory=factory, **kwargs)


async def first_pass(app: DevloopApp, rec: Recorder, runs: int = 1) -> None:
    await until("the first pass", lambda: len(rec.of(ev.RunDone)) >= runs)


async def quit_app(pilot) -> None:
    await pilot.app.run_action("quit")


async def test_start_runs_all_cells_and_shows_them(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        await pilot.pause()
        assert app.cell_states == {0: "ok", 1: "ok", 2: "ok"}
        assert app.header_bar.state == "ready"
        assert [line.text for line in app.store.ring(2)] [-1] == "total 12"
        await quit_app(pilot)


async def test_a_runs_all_again(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        await pilot.press("a")
        await first_pass(app, rec, runs=2)
        assert rec.of(ev.CellsPlanned)[-1].cells == (0, 1, 2)
        await quit_app(pilot)


async def test_r_reruns_selected_cell_and_what_depends_on_it(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        app.cells_panel.move_cursor(row=1, animate=False)
        await pilot.press("r")
        await first_pass(app, rec, runs=2)
        planned = rec.of(ev.CellsPlanned)[-1]
        assert planned.cells == (1, 2) and planned.reason == "rerun cell 1"
        await quit_app(pilot)


async def test_i_interrupts_the_running_cell_and_the_kernel_survives(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path, FOREVER), rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("cell 1 running", lambda: app.cell_states.get(1) == "running")
        pid = rec.of(ev.KernelReady)[-1].pid
        await pilot.press("i")
        await first_pass(app, rec)
        assert rec.of(ev.CellError, cell=1)[-1].type == "KeyboardInterrupt"
        await pilot.pause()
        assert app.cell_states[1] == "interrupted"  # the user stopped it: not a failure
        assert "interrupted" in str(app.sync_line.status)
        # the same kernel runs the next cell
        app.cells_panel.move_cursor(row=0, animate=False)
        await pilot.press("r")
        await until("cell 0 rerun", lambda: len(rec.of(ev.CellDone, cell=0)) >= 2)
        assert rec.of(ev.KernelReady)[-1].pid == pid
        await pilot.press("i")
        await quit_app(pilot)


async def test_k_restarts_the_kernel_and_marks_cells_stale(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        pid = rec.of(ev.KernelReady)[-1].pid
        await pilot.press("k")
        await until("a new kernel", lambda: len(rec.of(ev.KernelReady)) >= 2)
        assert rec.of(ev.KernelReady)[-1].pid != pid
        await pilot.pause()
        assert set(app.cell_states.values()) == {"stale"}
        await quit_app(pilot)


async def test_w_turns_watch_off_and_s_syncs_now(tmp_path: Path) -> None:
    rec = Recorder()
    root = make_project(tmp_path, copy_profile=True)
    app = make_app(root, rec, profile="copy")
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        assert rec.of(ev.SyncDone), "the first sync into the workdir"
        await pilot.press("w")
        assert app.session.watching is False and app.sync_line.watching is False
        syncs = len(rec.of(ev.SyncDone))
        (root / "extra.txt").write_text("new file\n")
        await pilot.press("s")
        await until("the manual sync", lambda: len(rec.of(ev.SyncDone)) > syncs)
        assert (tmp_path / "work" / "extra.txt").read_text() == "new file\n"
        assert len(rec.of(ev.RunDone)) == 1, "watch is off: no rerun"
        await pilot.press("w")
        assert app.session.watching is True
        await quit_app(pilot)


async def test_enter_on_failed_cell_jumps_to_its_traceback(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path, FAILING), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        await pilot.pause()
        assert app.cell_states[2] == "failed"
        app.cells_panel.move_cursor(row=2, animate=False)
        app.cells_panel.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.filter_cell == 2
        traceback = app.tracebacks[2]
        assert any("ValueError: bad total" in line.text for line in traceback)
        assert app.log_view.marked == {line.seq for line in traceback}
        first = app.log_view.index_of(traceback[0])
        assert first is not None and app.log_view.scroll_y <= first < app.log_view.scroll_y + app.log_view.size.height
        await quit_app(pilot)


async def test_slash_searches_and_f_filters_the_log(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        await pilot.press("slash")
        await pilot.press(*"doubled", "enter")
        await pilot.pause()
        assert [line.text for line in app.log_view._source] == ["doubled [2, 4, 6]"]
        await pilot.press("escape")
        app.cells_panel.move_cursor(row=0, animate=False)
        await pilot.press("f")
        assert app.filter_cell == 0
        assert all(line.cell == 0 for line in app.log_view._source)
        await pilot.press("f")
        assert app.filter_cell is None
        await quit_app(pilot)


async def test_p_opens_promote_dialog_and_reports_the_outcome(tmp_path: Path) -> None:
    from devloop.core.promote import promote

    rec = Recorder()
    app = make_app(make_project(tmp_path), rec, promote=promote, promote_targets=("argo", "github"))
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PromoteDialog)
        await pilot.click("#promote-ok")
        await until("promote's outcome in the log",
                    lambda: any(line.text.startswith(("promoted", "promote failed"))
                                for line in app.store.all.lines))
        assert not isinstance(app.screen, PromoteDialog)
        await quit_app(pilot)


async def test_t_switches_profile_closing_the_old_session(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path, copy_profile=True), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        old = app.session
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ProfilePicker)
        from textual.widgets import OptionList

        options = app.screen.query_one(OptionList)
        options.highlighted = ["copy", "local"].index("copy")
        await pilot.press("enter")
        await until("the new session's first pass", lambda: len(rec.of(ev.RunDone)) >= 2)
        assert app.session is not old and app.profile_name == "copy"
        assert rec.of(ev.TargetState, state="stopped", profile="local")
        assert app.header_bar.profile == "copy"
        await quit_app(pilot)


async def test_q_quits_and_cleans_up_the_target(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=SIZE) as pilot:
        await first_pass(app, rec)
        session = app.session
        # The key itself (pilot.press would wait for the screen of an app that has exited).
        app.simulate_key("q")
        await until("the app exits", lambda: app.return_code is not None)
    assert rec.of(ev.TargetState, state="stopped")
    assert session.kernel is None or not session.kernel.alive


PROGRESS = textwrap.dedent(
    """\
    # %% progress
    import sys, time
    for i in range(1, 4):
        sys.stdout.write(f"\\rtraining {i * 25}%")
        sys.stdout.flush()
        time.sleep(0.3)
    open("reached.txt", "w").close()
    time.sleep(30)
    """
)


async def test_a_progress_bar_moves_in_place_and_the_running_cell_counts_its_time(tmp_path: Path) -> None:
    """A tqdm-style bar (\\r, no newline) shows live as the log's last line, replaced in place,
    and the running cell's time counts up before the cell ends."""
    rec = Recorder()
    root = make_project(tmp_path, PROGRESS)
    app = make_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the bar at 75%", lambda: (root / "reached.txt").exists())
        await until("the bar drawn", lambda: [line.text for line in app.log_view.tail] == ["training 75%"])
        assert not any("training" in line.text for line in app.store.ring(0))  # not stored yet
        await until("a counting time", lambda: str(app.cells_panel.get_cell("0", "time")).endswith("s…"))
        await pilot.press("i")  # interrupt: the cell ends, the bar becomes a stored line
        await until("the cell ended", lambda: rec.of(ev.RunDone))
        await pilot.pause(0.1)
        assert app.log_view.tail == []
        assert any(line.text == "training 75%" for line in app.store.ring(0))
        assert not str(app.cells_panel.get_cell("0", "time")).endswith("…")
        await quit_app(pilot)


async def test_promote_dialog_switches_reach_promote_and_a_dirty_tree_needs_one(tmp_path: Path, monkeypatch) -> None:
    """With uncommitted changes, Promote + commit fails and says which box to tick; ticked, the
    pipeline file is written and committed (run off the event loop)."""
    import subprocess

    from devloop.core.promote import promote

    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}.items():
        monkeypatch.setenv(key, value)  # promote's own commit, on a machine without a git identity
    root = make_project(tmp_path)
    (root / "profiles").mkdir()
    (root / "profiles" / "gpu.yaml").write_text(
        "kind: docker\nimage: registry.example.com/team/train@sha256:" + "a" * 64 + "\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "remote", "add", "origin", "https://git.example.com/team/train.git"], cwd=root, check=True)
    subprocess.run(git + ["add", "-A"], cwd=root, check=True)
    subprocess.run(git + ["commit", "-qm", "init"], cwd=root, check=True)
    (root / "nb.py").write_text(CELLS + "# edited\n")  # uncommitted
    app = DevloopApp(config=load_config(root), profile="gpu", file="nb.py", promote=promote)

    def outcome() -> list[str]:
        return [line.text for line in app.store.all.lines if line.text.startswith(("promoted", "promote failed"))]

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        app.screen.query_one("#promote-commit").value = True
        await pilot.click("#promote-ok")
        await until("the refusal", outcome)
        assert "uncommitted" in outcome()[-1] and "tick 'Allow uncommitted changes'" in outcome()[-1]
        await pilot.press("p")
        await pilot.pause()
        app.screen.query_one("#promote-commit").value = True
        app.screen.query_one("#promote-dirty").value = True
        await pilot.click("#promote-ok")
        await until("the promotion", lambda: len(outcome()) == 2)
        assert outcome()[-1].startswith("promoted: wrote ") and "committed" in outcome()[-1]
        await quit_app(pilot)
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True).stdout
    assert log.splitlines()[0].startswith("devloop promote:")
