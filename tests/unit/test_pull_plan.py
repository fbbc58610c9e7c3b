"""The pull's pure parts: which folders to list, what to fetch, where a conflict goes; and the
agent's sender against the local extraction (real files, the real sync reader/writer)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from devloop.agent import pullsend
from devloop.core.sync.pull import PullResult, Puller, conflict_name, roots_of


def test_roots_are_the_anchored_rules_literal_folders() -> None:
    assert roots_of(("/results/", "figures/*.png")) == ["figures", "results"]
    assert roots_of(("/out/run1/**/*.csv",)) == ["out/run1"]
    assert roots_of(("results/",)) == ["."]  # no slash but the last: any depth, as in gitignore
    assert roots_of(("*.csv",)) == ["."]  # a bare glob matches at any depth
    assert roots_of(("/results/", "!results/tmp")) == ["results"]  # a negation adds nothing
    assert roots_of(()) == ["."]


def _tree(top: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)


REMOTE = {
    "results/metrics.csv": "a", "exp1/results/metrics.csv": "b", "exp1/results/deep/x.bin": "c",
    "results/keep.csv": "d",  # under a picked folder: a negation cannot take it back (git)
    "figures/a.png": "e", "exp1/figures/b.png": "f",  # figures/*.png is anchored to the top
    "figures/sub/c.png": "g", "data/t.csv": "h", "data/t.tmp.csv": "i", "notes.txt": "j",
    ".venv/pyvenv.cfg": "", ".venv/lib/results/v.csv": "k", "node_modules/results/n.csv": "l",
    "build/results/b.csv": "m",  # build/ is excluded by the sync: not walked
    "outputs/results/o.csv": "n",  # outputs/ too, but the anchored rule below starts in it
    "outputs/best/w.pt": "o", "src/__pycache__/results/p.csv": "q", ".git/results/g.csv": "r",
}
RULES = ("results/", "!results/keep.csv", "figures/*.png", "*.csv", "!*.tmp.csv", "outputs/best/*.pt")


def test_rules_match_as_gitignore_at_any_depth_and_the_listing_prunes_what_the_sync_excludes(
        tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    _tree(remote, REMOTE)
    local.mkdir()
    (local / ".gitignore").write_text("build/\n/outputs/\nresults/\n")  # outputs are often gitignored
    puller = Puller(_NoTarget(), local, RULES, exclude=("scratch/",))
    request = puller._request()
    assert request["roots"] == ["."]
    files, truncated = pullsend.walk(str(remote), request["roots"], request["match"], request["prune"])
    assert not truncated
    assert sorted(files) == ["data/t.csv", "exp1/results/deep/x.bin", "exp1/results/metrics.csv",
                             "figures/a.png", "results/keep.csv", "results/metrics.csv"]
    # the anchored rule's folder is walked although the sync excludes outputs/
    files, _ = pullsend.walk(str(remote), ["outputs/best"], request["match"], request["prune"])
    assert sorted(files) == ["outputs/best/w.pt"]
    # the local side decides with the same matcher (ignore.py), whatever the target listed
    picked = {rel for rel in REMOTE if puller._matches(rel)}
    assert picked == {"data/t.csv", "exp1/results/deep/x.bin", "exp1/results/metrics.csv", "figures/a.png",
                      "results/keep.csv", "results/metrics.csv", "outputs/best/w.pt", "outputs/results/o.csv",
                      "build/results/b.csv", ".venv/lib/results/v.csv", "node_modules/results/n.csv",
                      "src/__pycache__/results/p.csv"}  # never .git/


def test_anchored_rules_list_only_their_folders(tmp_path: Path) -> None:
    _tree(tmp_path, REMOTE)
    rules = ("/results/", "figures/*.png")
    request = Puller(_NoTarget(), tmp_path, rules)._request()
    assert request["roots"] == ["figures", "results"]
    files, _ = pullsend.walk(str(tmp_path), request["roots"], request["match"], request["prune"])
    assert sorted(files) == ["figures/a.png", "results/keep.csv", "results/metrics.csv"]


def test_the_listing_is_bounded(tmp_path: Path) -> None:
    _tree(tmp_path, {f"results/{n}.csv": "x" for n in range(30)})
    files, truncated = pullsend.walk(str(tmp_path), ["."], [[r"^(?:.+/)?results(?P<ps_d>/).*$", True]], [],
                                     max_scanned=10)
    assert truncated and len(files) <= 10


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


def _pull_once(remote: Path, local: Path, state: dict, patterns=("results/",), restore=False) -> PullResult:
    """One pull between two real folders: the agent's listing and sender, the local plan and
    extraction (what Puller.pull does over its exec channel)."""
    puller = Puller(_NoTarget(), local, patterns)
    if restore:
        puller.restore_deleted = True
    request = puller._request()
    listing = pullsend.walk(str(remote), request["roots"], request["match"], request["prune"])[0]
    result = PullResult()
    wanted, targets = puller._plan(listing, state, result)
    out = io.BytesIO()
    pullsend.send_files(str(remote), wanted, out)
    out.seek(0)
    puller._extract(out, listing, targets, state, result)
    return result


def test_content_not_mtime_decides_a_local_change(tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    _tree(remote, {"results/a.csv": "one\n", "results/b.csv": "two\n", "results/c.csv": "three\n"})
    local.mkdir()
    state: dict = {}
    assert sorted(_pull_once(remote, local, state).files) == ["results/a.csv", "results/b.csv", "results/c.csv"]
    assert all(len(record["sha256"]) == 64 for record in state.values())
    os.utime(local / "results" / "a.csv", ns=(10**18, 10**18))  # a touch
    (local / "results" / "b.csv").write_text("two\n")  # an editor's re-save, same bytes
    (local / "results" / "c.csv").write_text("3333\n")  # a real edit (same size)
    (local / "results" / "c.csv").write_text("thr3e\n")
    for rel, text in (("a", "ONE\n"), ("b", "TWO\n"), ("c", "THREE\n")):
        (remote / "results" / f"{rel}.csv").write_text(text)
        os.utime(remote / "results" / f"{rel}.csv", ns=(10**17, 10**17))
    result = _pull_once(remote, local, state)
    assert sorted(result.files) == ["results/a.csv", "results/b.csv"]  # same bytes here: no conflict
    assert result.conflicts == [("results/c.csv", "results/c.remote.csv")]
    assert (local / "results" / "a.csv").read_text() == "ONE\n" and (local / "results" / "c.csv").read_text() == "thr3e\n"


def test_a_never_pulled_local_file_with_the_same_bytes_is_no_conflict(tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    _tree(remote, {"results/a.csv": "same\n", "results/b.csv": "theirs\n"})
    _tree(local, {"results/a.csv": "same\n", "results/b.csv": "mine\n"})
    state: dict = {}
    result = _pull_once(remote, local, state)
    assert result.conflicts == [("results/b.csv", "results/b.remote.csv")]
    assert not (local / "results" / "a.remote.csv").exists() and state["results/a.csv"]["sha256"]
    assert _pull_once(remote, local, state).conflicts == []  # both known now: nothing again


def test_a_pulled_file_deleted_here_comes_back_only_when_asked_or_changed_there(tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    _tree(remote, {"results/a.csv": "a\n", "results/b.csv": "b\n"})
    local.mkdir()
    state: dict = {}
    _pull_once(remote, local, state)
    (local / "results" / "a.csv").unlink()
    (local / "results" / "b.csv").unlink()
    assert _pull_once(remote, local, state).files == []  # an after-pass pull: deleted on purpose
    (remote / "results" / "b.csv").write_text("b2\n")
    os.utime(remote / "results" / "b.csv", ns=(10**17, 10**17))
    assert _pull_once(remote, local, state).files == ["results/b.csv"]  # changed there since
    assert not (local / "results" / "a.csv").exists()
    assert _pull_once(remote, local, state, restore=True).files == ["results/a.csv"]  # `devloop pull`
    assert (local / "results" / "a.csv").read_text() == "a\n"
