"""The ports line (issue 17): hidden with no forwards; a forward's `listening` event shows
`localhost:6006 → target:6006` with its connections and bytes; `o` opens each forwarded URL in
turn in the browser; `closed` hides it again. Fed events (no target)."""

from __future__ import annotations

import webbrowser

import pytest

from devloop.core import events as ev
from devloop.ui.app import DevloopApp
from devloop.ui.widgets.ports import PortsLine
from tests.ui.test_snapshots import fake_config

pytestmark = pytest.mark.timeout(120)


async def test_the_ports_line_shows_forwards_and_o_opens_them(monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    app = DevloopApp(config=fake_config(), profile="docker-gpu", file="train.py")
    async with app.run_test(size=(80, 24)) as pilot:
        line = app.query_one("#ports", PortsLine)
        assert line.styles.display == "none"
        await pilot.press("o")  # nothing forwarded: says how to forward one
        app.feed([ev.PortForward(local=6006, remote=6006, state="listening", via="agent relay"),
                  ev.PortForward(local=18888, remote=8888, state="listening", via="agent relay")])
        await pilot.pause()
        assert line.styles.display == "block"
        text = line.render_text({6006: (2, 1536, 0)}).plain
        assert "localhost:6006 → target:6006 2 open, 1.5 KiB" in text and "localhost:18888 → target:8888" in text
        await pilot.press("o")
        await pilot.press("o")
        await pilot.pause(0.2)
        assert opened == ["http://localhost:6006/", "http://localhost:18888/"]
        app.feed([ev.PortForward(local=6006, remote=6006, state="closed"),
                  ev.PortForward(local=18888, remote=8888, state="closed")])
        await pilot.pause()
        assert line.styles.display == "none"
