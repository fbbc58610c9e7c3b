"""A cell's input() in `devloop up`: an input box under the log (as Jupyter's input request),
against a real kernel on `local`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from textual.widgets import Input

from devloop.core import events as ev
from devloop.ui.widgets.input_box import InputBox
from tests.ui.test_behaviour import SIZE, Recorder, make_app, make_project, quit_app, until

pytestmark = pytest.mark.timeout(120)

ASK = textwrap.dedent("""\
    # %% ask
    name = input("name? ")
    print("hello", name)
    # %% again
    try:
        input("more? ")
    except EOFError as exc:
        print("eof:", exc)
    """)


def has_focus(app, box: InputBox) -> bool:  # noqa: ANN001 - the app
    lines = box.query(Input)
    return bool(lines) and app.focused is lines.first()


async def test_input_opens_a_box_and_enter_answers_the_cell(tmp_path: Path) -> None:
    rec = Recorder()
    app = make_app(make_project(tmp_path, ASK), rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the first question", lambda: app.query(InputBox))
        box = app.query_one(InputBox)
        assert (box.request.cell, box.request.prompt) == (0, "name? ")
        # the box is found as soon as it is mounted, its line a moment later, and it takes the
        # focus after its first refresh (call_after_refresh): wait for both
        await until("the box has the focus", lambda: has_focus(app, box))
        await pilot.press(*"alice", "enter")
        await until("the second question", lambda: len(rec.of(ev.InputRequest)) == 2 and app.query(InputBox))
        assert any("hello alice" in e.text for e in rec.of(ev.Output, cell=0))
        await pilot.press("escape")  # end of input: the cell's input() raises EOFError
        await until("the pass", lambda: rec.of(ev.RunDone))
        assert any("eof: EOF when reading a line (the input box was closed (esc))" in e.text
                   for e in rec.of(ev.Output, cell=1))
        assert not app.query(InputBox)
        await quit_app(pilot)


async def test_getpass_opens_a_masked_box(tmp_path: Path) -> None:
    rec = Recorder()
    source = "# %% login\nimport getpass\ntoken = getpass.getpass('token? ')\nprint('got', len(token))\n"
    app = make_app(make_project(tmp_path, source), rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the question", lambda: app.query(InputBox))
        box = app.query_one(InputBox)
        await until("the box has the focus", lambda: has_focus(app, box))
        assert box.request.password and box.query_one(Input).password  # typed characters are masked
        await pilot.press(*"s3cret", "enter")
        await until("the pass", lambda: rec.of(ev.RunDone))
        assert any("got 6" in e.text for e in rec.of(ev.Output, cell=0))
        assert not any("s3cret" in line.text for line in app.store.all.lines)  # never in the log
        await quit_app(pilot)
