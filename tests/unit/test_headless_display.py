"""Headless lines for issue 15: figures by path, values under their cell, metric summary, pulls."""

from __future__ import annotations

import io
import json

from devloop.core import events as ev
from devloop.headless import Reporter


def report(events: list[ev.Event], **kw) -> str:
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out=out, err=err, github=False, **kw)
    for event in events:
        reporter(event)
    return out.getvalue()


FIG = ".devloop/outputs/20261130-093000-1-1/cell2-1.png"


def test_readable_figure_value_metrics_and_pull() -> None:
    text = report([
        ev.CellStart(2, 10, "plot"),
        ev.Output(2, "stdout", "loss=0.5\n"),
        ev.Display(cell=2, mime="image/png", k=1, width=640, height=480, bytes=100, path=FIG),
        ev.Display(cell=2, mime="text/plain", text="{'a': 1,\n 'b': 2}"),
        ev.Metric("loss", 0.5, 1, 2), ev.Metric("loss", 0.25, 2, 2), ev.Metric("loss", 0.3, 3, 2),
        ev.Metric("val_acc", 0.8, 1, 2),
        ev.CellDone(2, True, 12.0),
        ev.RunDone(True, 0, 1, 20.0),
        ev.PullDone(files=("results/m.csv",), bytes=1536, ms=40.0,
                    conflicts=({"path": "results/a.csv", "remote": "results/a.remote.csv"},)),
    ])
    assert f"[2] figure: {FIG}\n" in text
    assert "[2] {'a': 1,\n[2]  'b': 2}\n" in text
    assert text.index("[2] loss=0.5") < text.index("[2] figure:")
    assert "metric loss: last 0.3, best 0.25 (min), 3 values\n" in text
    assert "metric val_acc: last 0.8, best 0.8 (max), 1 value\n" in text
    assert "pull: 1 file, 1.5 KiB in 40 ms\n" in text
    assert "pull: conflict: results/a.csv changed here since the last pull; the target's copy is " \
           "results/a.remote.csv\n" in text


def test_json_has_the_display_event_with_the_local_path() -> None:
    text = report([ev.Display(cell=0, mime="image/png", k=1, width=3, height=2, bytes=9, path=FIG)],
                  json_lines=True)
    line = json.loads(text)
    assert line == {"event": "display", "cell": 0, "mime": "image/png", "k": 1, "width": 3, "height": 2,
                    "bytes": 9, "path": FIG, "text": "", "replayed": False}


def test_each_pass_of_watch_sums_up_its_own_metric_values() -> None:
    text = report([
        ev.Metric("loss", 0.5, 1, 0), ev.Metric("loss", 0.1, 2, 0), ev.RunDone(True, 0, 1, 20.0),
        ev.Metric("loss", 0.9, 3, 0), ev.Metric("loss", 0.7, 4, 0), ev.RunDone(True, 0, 1, 20.0),
    ])
    assert "metric loss: last 0.1, best 0.1 (min), 2 values\n" in text
    assert "metric loss: last 0.7, best 0.7 (min), 2 values\n" in text  # not the first pass's 0.1


def test_readable_mode_names_the_run_record() -> None:
    run_id = "784b3477-1a1c-43e7-8581-e82719a33a09"
    text = report([ev.RunDone(True, 0, 1, 20.0), ev.RunRecorded(run_id=run_id, path=".devloop/runs.jsonl")])
    assert text.endswith("record: run 784b3477 (devloop runs show 784b3477)\n")
    assert "record" not in report([ev.RunRecorded(run_id=run_id, path="")])  # not written: a warning said why
