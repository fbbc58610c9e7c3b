"""`events.from_json` is the inverse of `to_json()` for every event, after a trip through JSON
text (what a socket carries): the same event comes back, tuples as tuples."""

from __future__ import annotations

import json

import pytest

from devloop.core import events as ev

GPU = {"index": 0, "name": "NVIDIA H100", "uuid": "GPU-0", "util": 97, "mem_used": 61.3 * 2**30,
       "mem_total": 80 * 2**30, "temp": 67, "power": 512.4, "power_limit": 700, "processes": [{"pid": 41}]}

EXAMPLES: list[ev.Event] = [
    ev.SyncProgress(files_done=3, files_total=10, bytes_done=4096, bytes_total=65536, rate_bps=1.5e6, eta_s=0.4),
    ev.SyncProgress(files_done=0, files_total=1, bytes_done=0, bytes_total=1, rate_bps=0.0, eta_s=None),
    ev.SyncDone(files=42, bytes=1_843_200, deleted=2, ms=212.5, dependencies_changed=("requirements.txt",)),
    ev.SyncDone(files=0, bytes=0, deleted=0, ms=0.1),
    ev.TargetState("ready", "docker 3f2a9c1d", "docker-gpu", "docker"),
    ev.TargetState("stopped"),
    ev.KernelReady(pid=41, python="3.11.9", cwd="/workspace"),
    ev.FileParsed("train.py", False, ({"cell": 0, "title": "imports", "line": 1},
                                      {"cell": 1, "title": "", "line": 6})),
    ev.FileParsed("script.py", True),
    ev.CellState(cell=2, state="stale"),
    ev.CellStart(cell=1, line=6, title="load data"),
    ev.Output(cell=-1, stream="stderr", text="héllo\r\x1b[32mworld\x1b[0m\n"),
    ev.CellDone(cell=3, ok=False, ms=1532.0),
    ev.CellDone(cell=1, ok=False, ms=2.0, exit_code=3),
    ev.InputRequest(cell=0, n=1, prompt="name? "),
    ev.CellError(3, "RuntimeError", "shapes cannot be multiplied", "train.py", 41),
    ev.CellsPlanned(cells=(0, 2, 3), reason="changed"),
    ev.CellsPlanned(cells=()),
    ev.RunDone(ok=True, exit_code=0, cells_run=5, ms=2132.0),
    ev.GpuSample(True, (GPU,), source="nvml"),
    ev.GpuSample(False, reason="no NVIDIA driver"),
    ev.GpuSummary(gpus=({"index": 0, "peak_mem_gib": 61.3, "mean_util": 71.2},)),
    ev.Diagnostic(level="warning", message="agent: slow start"),
    ev.PortForward(local=6006, remote=6006, state="listening", via="agent relay"),
    ev.PortForward(local=18888, remote=8888, state="closed", bind="0.0.0.0", host="db", via="ssh direct-tcpip"),
    ev.Display(cell=2, mime="image/png", k=1, width=640, height=480, bytes=25589,
               path=".devloop/outputs/20261130-092836-1-1/cell2-1.png"),
    ev.Display(cell=0, mime="text/plain", text="{'a': 1}"),
    ev.Metric(metric="loss", value=0.123, step=4, cell=1),
    ev.PullDone(files=("results/metrics.csv",), bytes=17, conflicts=({"path": "results/a.csv", "remote": "results/a.remote.csv"},),
                deferred=("results/big.bin",), ms=12.5),
    ev.RunRecorded(run_id="0b5e6c1a-7d1f-4c55-9f0e-2a3b4c5d6e7f", path=".devloop/runs.jsonl",
                   record={"run_id": "0b5e6c1a-7d1f-4c55-9f0e-2a3b4c5d6e7f", "ok": True,
                           "cells": [{"index": 0, "state": "ok", "ms": 1.5}]}),
]


def all_event_classes() -> list[type[ev.Event]]:
    found, todo = [], list(ev.Event.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def over_the_wire(event: ev.Event) -> ev.Event:
    return ev.from_json(json.loads(json.dumps(event.to_json())))


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_example_round_trips_through_json_text(event: ev.Event) -> None:
    back = over_the_wire(event)
    assert type(back) is type(event)
    assert back == event
    assert back.to_json() == event.to_json()


def test_every_event_class_has_an_example_and_a_unique_name() -> None:
    classes = all_event_classes()
    assert {type(e) for e in EXAMPLES} == set(classes)
    names = [cls.name for cls in classes]
    assert len(names) == len(set(names)), names


def test_fields_kept_out_of_the_json_come_back_as_defaults() -> None:
    ready = ev.KernelReady(pid=7, python="3.12.1", cwd="/w", packages={"numpy": "2.0.0"})
    assert over_the_wire(ready) == ev.KernelReady(pid=7, python="3.12.1", cwd="/w")


def test_an_error_carries_its_traceback_in_the_json() -> None:
    error = ev.CellError(0, "ValueError", "bad", "nb.py", 3, traceback="Traceback ...\nValueError: bad\n")
    assert error.to_json()["traceback"] == "Traceback ...\nValueError: bad\n"
    assert over_the_wire(error) == error


def test_unknown_keys_from_a_newer_peer_are_ignored() -> None:
    data = ev.CellDone(cell=1, ok=True, ms=3.0).to_json() | {"attached": False}
    assert ev.from_json(data) == ev.CellDone(cell=1, ok=True, ms=3.0)


@pytest.mark.parametrize("data", [{}, {"event": "no_such_event"}, {"event": 3}, {"event": "cell_done", "cell": 1}])
def test_what_is_not_an_event_is_a_one_line_error(data: dict) -> None:
    with pytest.raises(ValueError, match="-- fix: "):
        ev.from_json(data)
