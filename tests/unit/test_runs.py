"""core/runs: the runs.jsonl store (partial lines, rotation, id prefixes), JUnit XML against
Jenkins' junit-10.xsd, the step summary's redaction, and which run promote cites."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
import xmlschema

from devloop.core.promote.cite import NO_GREEN, cite_green_run, image_matches
from devloop.core.runs import store
from devloop.core.runs.junit import OutputCollector, clean_text, junit_xml
from devloop.core.runs.store import is_green
from devloop.core.runs.step_summary import markdown, redact, secret_values

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).resolve().parents[1] / "schemas" / "junit-10.xsd"))
DIGEST = "sha256:" + "ab" * 32


def rec(run_id: str, *, ok: bool = True, profile: str = "local", commit: str = "c1", dirty: bool = False,
        diff: str = "", kind: str = "local", digest: str = "", states=("ok", "ok")) -> dict:
    return {"run_id": run_id, "profile": profile, "ok": ok, "exit_code": 0 if ok else 1,
            "git": {"commit": commit, "dirty": dirty, "diff_sha256": diff},
            "target": {"kind": kind, "host": "h"}, "image": {"ref": "", "digest": digest},
            "cells": [{"index": i, "title": f"c{i}", "line": 1 + 4 * i, "state": s, "ms": 1.0}
                      for i, s in enumerate(states)], "errors": [], "file": "nb.py"}


# ------------------------------------------------------------------------------ store
def test_append_reads_back_and_skips_bad_lines(tmp_path: Path) -> None:
    store.append(tmp_path, rec("aaaa-1"))
    log = store.runs_path(tmp_path)
    with log.open("ab") as fh:
        fh.write(b'{"run_id": "half", "cel')  # a writer killed mid-write
    store.append(tmp_path, rec("bbbb-2"))
    assert [r["run_id"] for r in store.read_all(tmp_path)] == ["aaaa-1", "bbbb-2"]
    assert log.read_bytes().count(b"\n") == 3  # the partial line ended, never rewritten
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_rotation_bounds_the_files_and_keeps_the_newest(tmp_path: Path) -> None:
    for n in range(40):
        store.append(tmp_path, rec(f"run-{n:03d}"), max_bytes=2_000, keep=2)
    folder = store.runs_path(tmp_path).parent
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith("runs.jsonl") and not p.name.endswith(".lock"))
    assert names == ["runs.jsonl", "runs.jsonl.1", "runs.jsonl.2"]
    kept = [r["run_id"] for r in store.read_all(tmp_path, keep=2)]
    assert kept[-1] == "run-039" and kept == sorted(kept) and len(kept) < 40
    assert all(p.stat().st_size < 2_000 + 1_000 for p in folder.iterdir())


def test_find_by_prefix_like_git(tmp_path: Path) -> None:
    store.append(tmp_path, rec("abc123-x"))
    store.append(tmp_path, rec("abd456-y"))
    assert store.find(tmp_path, "abc")["run_id"] == "abc123-x"
    with pytest.raises(store.RunNotFound, match="ambiguous"):
        store.find(tmp_path, "ab")
    with pytest.raises(store.RunNotFound, match="no run 'zz'"):
        store.find(tmp_path, "zz")


# ------------------------------------------------------------------------------ junit
def test_junit_cleans_output_and_validates() -> None:
    record = rec("r1", ok=False, states=("ok", "failed", "skipped"))
    record["errors"] = [{"cell": 1, "type": "KeyError", "message": "'x' <&> \x00", "file": "nb.py",
                         "line": 7, "traceback": "Traceback ...\nKeyError: 'x'\n"}]
    outputs = {0: "\x1b[31mred\x1b[0m\rprogress 50%\rprogress 100%\n\x07bell", 1: "y" * 100_000}
    text = junit_xml(record, outputs)
    SCHEMA.validate(text)
    suite = ET.fromstring(text).find("testsuite")
    out0 = suite.findall("testcase")[0].findtext("system-out")
    assert out0 == "progress 100%\nbell"
    out1 = suite.findall("testcase")[1].findtext("system-out")
    assert out1.startswith("[... ") and len(out1) < 70_000
    failure = suite.findall("testcase")[1].find("failure")
    assert failure.get("message") == "nb.py:7: 'x' <&> "


def test_untitled_cells_are_named_by_line() -> None:
    record = rec("r2", states=("ok",))
    record["cells"][0]["title"] = ""
    assert 'name="00 line 1"' in junit_xml(record)


def test_output_collector_bounds_memory() -> None:
    from devloop.core import events as ev

    collect = OutputCollector(keep=1_000)
    for _ in range(100):
        collect(ev.Output(cell=0, stream="stdout", text="z" * 100))
    assert len(collect.outputs()[0]) < 2_100
    assert clean_text(collect.outputs()[0], keep=1_000).startswith("[... ")


# ------------------------------------------------------------------------------ summary
def test_summary_hides_environment_values() -> None:
    record = rec("r3", ok=False, states=("ok", "failed"))
    record["errors"] = [{"cell": 1, "type": "ValueError", "message": "token=hunter22-secret",
                         "file": "nb.py", "line": 6}]
    env = {"TOKEN": "hunter22-secret", "CI": "true", "SHORT": "ab"}
    text = markdown(record, secrets=secret_values(env))
    assert "hunter22-secret" not in text and "token=***" in text
    assert "`nb.py:6`" in text and "| 1 | c1 | 5 | ❌ failed |" in text
    assert redact("a true story", secret_values(env)) == "a true story"


# ------------------------------------------------------------------------------ citation
def state(commit: str = "c1", dirty_files=(), diff: str = "") -> SimpleNamespace:
    return SimpleNamespace(commit=commit, dirty_files=tuple(dirty_files), diff_sha256=diff)


def pinned(digest: str = DIGEST, source: str = "profile") -> SimpleNamespace:
    return SimpleNamespace(ref="reg/x@" + digest, digest=digest, source=source)


def test_the_newest_matching_green_run_is_cited(tmp_path: Path) -> None:
    runs = [rec("old-green"), rec("new-green"), rec("newest-red", ok=False, states=("ok", "failed")),
            rec("other-profile", profile="gpu"), rec("other-commit", commit="c2")]
    c = cite_green_run(tmp_path, "local", state(), pinned(), runs)
    assert c.run_id == "new-green" and "cites green run" in c.line()


def test_dirty_runs_match_only_the_same_diff(tmp_path: Path) -> None:
    runs = [rec("dirty-a", dirty=True, diff="d1")]
    assert cite_green_run(tmp_path, "local", state(dirty_files=("nb.py",), diff="d1"), pinned(), runs)
    miss = cite_green_run(tmp_path, "local", state(dirty_files=("nb.py",), diff="d2"), pinned(), runs)
    assert not miss and miss.reason.startswith(NO_GREEN)
    assert not cite_green_run(tmp_path, "local", state(), pinned(), runs)  # clean tree: other code


def test_container_runs_must_match_the_pinned_image() -> None:
    run = rec("d", kind="docker", digest="reg/x@" + DIGEST)
    assert image_matches(run, pinned())
    assert not image_matches(run, pinned("sha256:" + "cd" * 32))
    snap_run = rec("snap-source", kind="docker", digest="sha256:" + "ee" * 32)
    snapshot = {"run_id": "snap-source", "image_id": "sha256:" + "ff" * 32}
    assert image_matches(snap_run, pinned("sha256:" + "11" * 32, "snapshot"), snapshot)
    assert image_matches(rec("l"), pinned())  # local: no image to compare


def test_green_needs_every_cell_ok() -> None:
    assert is_green(rec("a", states=("ok", "unchanged")))
    assert not is_green(rec("b", states=("ok", "not_run")))
    assert not is_green(rec("c", states=()))
    assert json.dumps(rec("d"))  # records are plain JSON


WRITER = """
import sys
from pathlib import Path
from devloop.core.runs import store
root, who = Path(sys.argv[1]), sys.argv[2]
for n in range(25):
    store.append(root, {"run_id": f"{who}-{n:02d}", "pad": "p" * 3000}, max_bytes=40_000, keep=50)
"""


def test_concurrent_writers_never_interleave_or_lose_records(tmp_path: Path) -> None:
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{k}"]) for k in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    folder = store.runs_path(tmp_path).parent
    lines = [ln for f in folder.glob("runs.jsonl*") if not f.name.endswith(".lock")
             for ln in f.read_bytes().split(b"\n") if ln]
    assert all(json.loads(ln)["pad"] == "p" * 3000 for ln in lines)  # every line whole
    ids = sorted(r["run_id"] for r in store.read_all(tmp_path, keep=50))
    assert ids == sorted(f"w{k}-{n:02d}" for k in range(4) for n in range(25))
    for k in range(4):  # each writer's records keep their order
        mine = [r["run_id"] for r in store.read_all(tmp_path, keep=50) if r["run_id"].startswith(f"w{k}-")]
        assert mine == sorted(mine)
