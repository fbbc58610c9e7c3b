"""Snapshot tests of `devloop up` at 120x40 (and 80x24), fed fixed fake events: no target, no clock.

Update after an intended change with `pytest tests/ui/test_snapshots.py --snapshot-update` and
look at the SVGs in snapshots/test_snapshots/.
"""

from __future__ import annotations

from types import SimpleNamespace

from devloop.ui.app import DevloopApp
from tests.ui import fake_events

SIZE = (120, 40)


def fake_config() -> SimpleNamespace:
    """Just what the app reads from a Config: the project name and the profile names."""
    return SimpleNamespace(
        project=SimpleNamespace(name="mnist-demo"),
        ui=SimpleNamespace(scrollback=10_000),
        profile_names=lambda: ["local", "docker-gpu", "ssh-gpu", "k8s-gpu"],
    )


def make_app() -> DevloopApp:
    return DevloopApp(config=fake_config(), profile="docker-gpu", file="train.py")


def feeding(events, *then):
    async def run_before(pilot) -> None:
        pilot.app.feed(events)
        await pilot.pause()
        for step in then:
            await step(pilot)
        pilot.app.flush_log()
        await pilot.pause()

    return run_before


def test_start_screen(snap_compare) -> None:
    """Target ready, cells parsed, first sync done, waiting for the first GPU sample."""
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.start()))


def test_running_cell_streaming(snap_compare) -> None:
    """Cell 3 running, its output streaming with ANSI colours and a stderr warning."""
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.streaming()))


def test_failed_cell_traceback(snap_compare) -> None:
    """Enter on the failed cell: the log shows that cell, scrolled to its highlighted traceback."""

    async def choose_failed(pilot) -> None:
        pilot.app.cells_panel.move_cursor(row=3, animate=False)
        await pilot.press("enter")

    assert snap_compare(make_app(), terminal_size=SIZE,
                        run_before=feeding(fake_events.failed(), choose_failed))


def test_gpu_panel_two_gpus(snap_compare) -> None:
    """Two GPUs with 40 samples of history; GPU1 reports n/a for temperature and power."""
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.two_gpus()))


def test_no_gpu_panel(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.no_gpu()))


def test_promote_dialog(snap_compare) -> None:
    async def open_promote(pilot) -> None:
        await pilot.press("p")

    app = DevloopApp(config=fake_config(), profile="docker-gpu", file="train.py",
                     promote=lambda *args: None, promote_targets=("argo", "github"))
    assert snap_compare(app, terminal_size=SIZE, run_before=feeding(fake_events.start(), open_promote))


def test_narrow_layout(snap_compare) -> None:
    """80x24: cells and GPU side by side on top, the log below."""
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=feeding(fake_events.two_gpus()))


def test_attached_session(snap_compare) -> None:
    """`devloop attach`: 3 of 5 cells kept (badge in the header), cell 3 still running, the output
    it printed while nobody was attached shown once under a dim "(while detached)" marker."""
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.attached()))


def test_reconnecting(snap_compare) -> None:
    """The link dropped during cell 3: the header says reconnecting, the log says the kernel goes on."""
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.reconnecting()))


def test_stop_confirm_dialog(snap_compare) -> None:
    """q while a cell runs asks first: stop, detach instead, or cancel."""
    from devloop.ui.widgets.dialogs import StopConfirm

    async def ask(pilot) -> None:
        pilot.app.push_screen(StopConfirm(3))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=feeding(fake_events.streaming(), ask))


def test_narrow_attached(snap_compare) -> None:
    """80x24 attached: the footer still shows d Detach and q Quit."""
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=feeding(fake_events.attached()))
