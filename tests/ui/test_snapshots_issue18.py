"""Snapshots for issue 18 at 80x24 and 120x40: a long tqdm line while a cell runs (wrapped, its
tail kept), the done state (the last line on screen), the help screen (`?`), the promote dialog
(buttons visible) and a failed profile switch (nothing of the old profile left). Fixed events, no
target, no clock. Update with `pytest tests/ui/test_snapshots_issue18.py --snapshot-update` and
look at snapshots/test_snapshots_issue18/."""

from __future__ import annotations

import asyncio

import pytest

from devloop.core.targets.base import TargetError
from devloop.ui.app import DevloopApp
from tests.ui import fake_events
from tests.ui.test_snapshots import fake_config

SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


def make_app() -> DevloopApp:
    return DevloopApp(config=fake_config(), profile="docker-gpu", file="train.py",
                      promote=lambda *args: None, promote_targets=("argo", "github"))


def feeding(events, *then):
    async def run_before(pilot) -> None:
        pilot.app.feed(events)
        await pilot.pause()
        for step in then:
            await step(pilot)
        pilot.app.flush_log()
        await pilot.pause()

    return run_before


def press(*keys):
    async def step(pilot) -> None:
        await pilot.press(*keys)
        await pilot.pause()

    return step


@SIZES
def test_running_with_a_long_tqdm_line(snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=feeding(fake_events.tqdm_running()))


@SIZES
def test_running_with_wrapping_off(snap_compare, size) -> None:
    """`l`: one row per line; the live tqdm bar keeps its head and its tail."""
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=feeding(fake_events.tqdm_running(), press("l")))


@SIZES
def test_done(snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=feeding(fake_events.done()))


@SIZES
def test_help_screen(snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=feeding(fake_events.start(), press("question_mark")))


@SIZES
def test_promote_dialog_fits(snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=feeding(fake_events.start(), press("p")))


@SIZES
def test_failed_profile_switch(snap_compare, size) -> None:
    """After a done run on docker-gpu, `t` -> ssh-gpu, which does not start: the failure is on
    screen; the old cells, GPU gauges, kernel and "run ok" are gone."""

    def unreachable(profile: str):
        raise TargetError(f"cannot connect to gpu-box.example.com:22 for profile {profile!r}: "
                          "connection refused", hint="check the host is up and sshd listens on port 22")

    async def switch(pilot) -> None:
        pilot.app.host_factory = unreachable
        pilot.app.handle_event(fake_events.gpu(3))
        await pilot.pause()
        pilot.app._profile_chosen("ssh-gpu")
        for _ in range(200):
            if pilot.app.header_bar.state == "failed":
                break
            await asyncio.sleep(0.01)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=feeding(fake_events.done(), switch))
