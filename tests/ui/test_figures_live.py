"""`devloop up` against a real kernel on `local`: a figure, a value and metrics reach the log and
the panel (issue 15), through the same path as a user's session."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from devloop.core import events as ev
from tests.ui.test_behaviour import SIZE, Recorder, make_app, make_project, quit_app, until

pytestmark = pytest.mark.timeout(120)

NB = textwrap.dedent("""\
    # %% train
    for step in range(1, 4):
        print(f"step {step} loss={1 / step:.3f}")
    # %% plot
    import matplotlib.pyplot as plt
    plt.figure(figsize=(2, 1), dpi=100)
    plt.plot([3, 1, 2])
    print("after the figure")
    "value"
    """)


async def test_a_figure_value_and_metrics_in_the_app(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    root = make_project(tmp_path, NB)
    toml = root / "devloop.toml"
    toml.write_text(toml.read_text() + '[ui]\nmetrics = ["loss"]\nimages = "halfblock"\n')
    rec = Recorder()
    app = make_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the first pass", lambda: rec.of(ev.RunDone))
        await pilot.pause()
        await asyncio.gather(*app.figure_jobs)
        (figure,) = [e for e in rec.of(ev.Display) if e.path]
        assert (root / figure.path).exists() and (figure.width, figure.height) == (200, 100)
        texts = [line.text for line in app.store.ring(1)]
        head = [i for i, t in enumerate(texts) if t.startswith("▣ figure 200×100")]
        assert head, texts
        rows = texts[head[0] + 1:]
        assert rows and "▀" in rows[0] and "\x1b[38;2;" in rows[0]  # drawn, in colour
        assert "after the figure" in texts and "'value'" in texts
        panel = app.query_one("MetricsPanel")
        assert panel.history.series["loss"].values == [1.0, 0.5, 0.333]
        await quit_app(pilot)
