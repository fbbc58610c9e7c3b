"""Issue 18 in the app: the log follows the newest output unless the user scrolled up (then a
"new output below" note; End follows again), also after a wide line added a horizontal
scrollbar; long lines wrap (l: off); each key says what it did (i, k, s, ?); a failed profile
switch leaves nothing of the old profile on screen. Fed events (no target) where the engine is
not the point; the real engine on a local profile for the keys that act on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.ui.app import DevloopApp
from devloop.ui.widgets.help import HelpScreen
from devloop.ui.widgets.logview import NEW_BELOW
from tests.ui import fake_events
from tests.ui.test_behaviour import FOREVER, Recorder, first_pass, make_app, make_project, quit_app, until
from tests.ui.test_snapshots import fake_config

pytestmark = pytest.mark.timeout(120)


def fed_app() -> DevloopApp:
    return DevloopApp(config=fake_config(), profile="docker-gpu", file="train.py")


def shown(app: DevloopApp) -> list[str]:
    """The log's rows as drawn now, up to the last one with text."""
    log = app.log_view
    rows = ["".join(segment.text for segment in log.render_line(y)).rstrip()
            for y in range(log.scrollable_content_region.height)]
    while rows and not rows[-1]:
        rows.pop()
    return rows


def lines(cell: int, start: int, count: int, width: int = 0) -> list[ev.Event]:
    pad = "=" * width
    return [ev.Output(cell, "stdout", f"line {i}{pad}\n") for i in range(start, start + count)]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_log_follows_the_newest_output_and_the_done_state_shows_the_last_line(size) -> None:
    app = fed_app()
    async with app.run_test(size=size) as pilot:
        app.feed(fake_events.done())
        await pilot.pause()
        assert app.log_view.follow
        assert shown(app)[-1].endswith("test accuracy 0.9312")


async def test_after_a_wide_line_added_a_horizontal_scrollbar_the_log_still_follows() -> None:
    app = fed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")  # wrapping off: a wide line scrolls sideways
        assert app.log_view.wrap is False
        app.feed(fake_events.start() + [ev.CellStart(3, 30, "train")] + lines(3, 0, 60))
        await pilot.pause()
        app.feed(lines(3, 60, 1, width=400))  # the horizontal scrollbar appears
        await pilot.pause()
        assert app.log_view.show_horizontal_scrollbar
        app.feed(lines(3, 61, 5))
        await pilot.pause()
        await pilot.pause()
        assert app.log_view.follow
        assert shown(app)[-1].endswith("line 65")


async def test_scrolling_up_stops_following_says_new_output_below_and_end_follows_again() -> None:
    app = fed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.feed(fake_events.start() + [ev.CellStart(3, 30, "train")] + lines(3, 0, 100))
        await pilot.pause()
        app.log_view.focus()
        await pilot.press("pageup")
        assert not app.log_view.follow
        before = app.log_view.scroll_y
        app.feed(lines(3, 100, 20))
        await pilot.pause()
        assert app.log_view.scroll_y == before  # what the user reads stays put
        assert app.log_view.border_subtitle == NEW_BELOW
        assert not any(row.endswith("line 119") for row in shown(app))
        app.cells_panel.focus()  # End works from the cells panel too
        await pilot.press("end")
        await pilot.pause()
        assert app.log_view.follow and app.log_view.border_subtitle == ""
        assert shown(app)[-1].endswith("line 119")
        # scrolling back down to the bottom follows again as well
        app.log_view.focus()
        await pilot.press("pageup")
        assert not app.log_view.follow
        await pilot.press("pagedown", "pagedown", "pagedown")
        assert app.log_view.follow


async def test_long_lines_wrap_and_l_switches_wrapping_off_keeping_a_progress_bar_s_tail() -> None:
    app = fed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.feed(fake_events.tqdm_running())
        await pilot.pause()
        text = "".join(row[6:] for row in shown(app))
        assert "23456.78it/s, loss=0.2154, acc=0.9312, lr=3.0e-04, grad_norm=1.234]" in text  # all of it
        await pilot.press("l")
        await pilot.pause()
        last = shown(app)[-1]
        assert len(last) <= 80 and "…" in last
        assert last.startswith("  3 ▌ training epoch 3/10") and last.endswith("grad_norm=1.234]")
        assert "l: wrap" in str(app.sync_line.status)


async def test_devloop_s_own_messages_wrap_even_with_wrapping_off() -> None:
    app = fed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("l")
        message = ("promote failed: the repository has uncommitted changes in train.py and "
                   "data/prep.py; commit them or tick 'Allow uncommitted changes' in this dialog")
        app._log_line(message, stream="stderr")
        app.flush_log()
        await pilot.pause()
        text = "".join(row[6:] for row in shown(app) if row.strip()).replace(" ", "")
        assert message.replace(" ", "") in text  # all of it, wrapped


async def test_question_mark_lists_every_key_with_what_it_does() -> None:
    from devloop.ui.app import ACTIONS

    app = fed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        for key, _action, _label, help_ in ACTIONS:
            assert keys[{"question_mark": "?", "slash": "/"}.get(key, key)] == help_
        assert "end" in keys and "enter" in keys
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_the_palette_has_this_app_s_keys_not_textual_s_generic_panel() -> None:
    app = fed_app()
    async with app.run_test(size=(120, 40)):
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Keys" not in titles and "Keys (?)" in titles


async def test_i_marks_the_cell_interrupted_not_failed() -> None:
    app = fed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.feed(fake_events.start() + [
            ev.CellState(1, "running"), ev.CellStart(1, 6, "load data"),
            ev.CellError(1, "KeyboardInterrupt", "", "train.py", 9, "Traceback ...\nKeyboardInterrupt\n"),
            ev.CellDone(1, False, 1200.0), ev.CellState(1, "failed"), ev.CellState(2, "stale"),
            ev.RunDone(False, 1, 1, 1200.0)])
        await pilot.pause()
        assert app.cell_states[1] == "interrupted"
        assert "interrupted" in str(app.cells_panel.get_cell("1", "state"))
        status = str(app.sync_line.status)
        assert "interrupted" in status and "failed" not in status


async def test_i_with_nothing_running_says_so(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_pass(app, rec)
        await pilot.pause(0.2)
        await pilot.press("i")
        assert "nothing is running" in str(app.sync_line.status)
        await quit_app(pilot)


async def test_i_on_a_running_cell_says_it_interrupts_it(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path, FOREVER), rec)
    async with app.run_test(size=(80, 24)) as pilot:
        await until("cell 1 running", lambda: app.cell_states.get(1) == "running")
        await pilot.press("i")
        await first_pass(app, rec)
        await pilot.pause(0.2)
        assert app.cell_states[1] == "interrupted"
        assert "interrupted · cell 1" in str(app.sync_line.status)
        await quit_app(pilot)


async def test_k_says_the_kernel_was_restarted_and_what_that_means(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_pass(app, rec)
        await pilot.press("k")
        await until("the restart's word", lambda: "kernel restarted" in str(app.sync_line.status))
        said = [line.text for line in app.store.all.lines if line.text.startswith("kernel restarted")]
        assert said and "every variable" in said[-1] and "stale" in said[-1]
        await quit_app(pilot)


async def test_s_on_a_profile_that_runs_in_place_says_there_is_nothing_to_sync(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path), rec)  # `local`: runs in the project folder itself
    async with app.run_test(size=(80, 24)) as pilot:
        await first_pass(app, rec)
        await pilot.pause(0.2)  # the pass's own status first
        await pilot.press("s")
        assert "nothing to sync" in str(app.sync_line.status)
        await quit_app(pilot)


async def test_a_failed_profile_switch_shows_the_failure_and_nothing_of_the_old_profile(tmp_path: Path) -> None:
    rec = Recorder()
    root = make_project(tmp_path)
    (root / "profiles").mkdir()
    (root / "profiles" / "broken.yaml").write_text(f"kind: local\nworkdir: {root}\n")  # the project itself: refused
    app = make_app(root, rec)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_pass(app, rec)
        app.handle_event(ev.GpuSample(False, (), "no NVIDIA driver"))
        app.handle_event(ev.Metric(metric="loss", value=0.5, step=1, cell=0))
        app.handle_event(ev.PortForward(local=18888, remote=8888, state="listening"))
        app._figures[12345] = root / "old.png"
        await pilot.pause()
        from devloop.ui.widgets.metrics import MetricsPanel
        from devloop.ui.widgets.ports import PortsLine

        assert app.query_one(PortsLine).forwards and app.query_one(MetricsPanel).has_class("-active")
        app._profile_chosen("broken")
        await until("the failure", lambda: app.header_bar.state == "failed")
        await pilot.pause()
        assert app.cells_panel.row_count == 0 and not app.cell_states
        assert app.gpu_panel.available is None and not app.header_bar.kernel
        assert "run ok" not in str(app.sync_line.status) and "did not start" in str(app.sync_line.status)
        assert any("broken" in line.text for line in app.store.all.lines)  # the log says why
        # nor its metrics, forwarded ports or figures
        assert not app.query_one(PortsLine).forwards and not app._figures
        panel = app.query_one(MetricsPanel)
        assert not panel.has_class("-active") and not any(s.values for s in panel.history.series.values())
        await quit_app(pilot)
