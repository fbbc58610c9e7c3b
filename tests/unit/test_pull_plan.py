"""The pull's pure parts: which folders to list, what to fetch, where a conflict goes; and the
agent's sender against the local extraction (real files, the real sync reader/writer)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from devloop.agent import pullsend
from devloop.core.sync.pull import PullResult, Puller, conflict_name, roots_of


def test_roots_are_the_rules_literal_folders() -> None:
    assert roots_of(("results/", "figures/*.png")) == ["figures", "results"]
    assert roots_of(("/out/run1/**/*.csv",)) == ["out/run1"]
    assert roots_of(("*.csv",)) == ["."]  # a bare glob matches at any depth
    assert roots_of(("results/", "!results/tmp")) == ["."]
    assert roots_of(()) == ["."]


def test_conflict_names_keep_the_extension() -> None:
    assert conflict_name("results/metrics.csv") == "results/metrics.remote.csv"
    assert conflict_name("figures/a.b.png") == "figures/a.b.remote.png"
    assert conflict_name("README") == "README.remote"
    assert conflict_name(".env") == ".env.remote"


class _NoTarget:
    needs_sync = True


def plan(tmp_path: Path, listing: dict, state: dict, patterns=("results/",), cap=1 << 20):
    puller = Puller(_NoTarget(), tmp_path, patterns, max_bytes=cap)
    result = PullResult()
    wanted, targets = puller._plan(listing, state, result)
    return wanted, targets, result


def test_plan_new_changed_unchanged_capped_and_conflicting(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    same = tmp_path / "results" / "same.csv"
    same.write_text("abc")
    st = os.stat(same)
    edited = tmp_path / "results" / "edited.csv"
    edited.write_text("mine")
    est = os.stat(edited)
    listing = {
        "results/new.csv": [10, 1], "results/same.csv": [3, st.st_mtime_ns],
        "results/edited.csv": [7, 5], "results/pulled.csv": [4, 9], "results/huge.bin": [2 << 20, 1],
        "other/x.csv": [1, 1], ".devloop/x": [1, 1],
    }
    state = {"results/edited.csv": {"remote": [6, 4], "local": [1, 1]},   # changed here since
             "results/pulled.csv": {"remote": [4, 9], "local": None}}     # unchanged there
    wanted, targets, result = plan(tmp_path, listing, state)
    assert wanted == ["results/edited.csv", "results/new.csv"]
    assert targets == {"results/edited.csv": "results/edited.remote.csv", "results/new.csv": "results/new.csv"}
    assert result.deferred == ["results/huge.bin"]
    assert state["results/same.csv"]["local"] == [3, st.st_mtime_ns]  # identical: recorded, not fetched
    assert est.st_size == 4


def test_sender_stream_extracts_safely_with_the_sync_reader(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    (remote / "results" / "deep" / ("d" * 60)).mkdir(parents=True)
    long_rel = "results/deep/" + "d" * 60 + "/" + "n" * 60 + ".csv"  # over 100 bytes: a PAX name
    (remote / long_rel).write_text("long")
    (remote / "results" / "a.csv").write_text("a,b\n")
    os.symlink("/etc/passwd", remote / "results" / "link.csv")
    listing = pullsend.list_files(str(remote), ["results"])
    assert set(listing) == {"results/a.csv", long_rel}  # the symlink is not listed
    out = io.BytesIO()
    pullsend.send_files(str(remote), ["results/a.csv", long_rel, "results/link.csv", "../escape"], out)
    local = tmp_path / "local"
    local.mkdir()
    puller = Puller(_NoTarget(), local, ("results/",))
    result, state = PullResult(), {}
    out.seek(0)
    puller._extract(out, listing, {"results/a.csv": "results/a.csv", long_rel: long_rel}, state, result)
    assert sorted(result.files) == sorted(["results/a.csv", long_rel])
    assert (local / "results" / "a.csv").read_text() == "a,b\n" and (local / long_rel).read_text() == "long"
    assert sorted(result.skipped) == ["../escape", "results/link.csv"]
    assert json.dumps(state)  # what is saved
