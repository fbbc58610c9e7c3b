"""`[sync] pull` on the SSH target (issue 15): a cell's output files come back into the project,
incrementally, a local change is never overwritten, pulled files start no rerun."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.clitools import Watch, events, last
from tests.clitools import devloop as _devloop

pytestmark = pytest.mark.ssh

NB = textwrap.dedent("""\
    # %% write outputs
    import os
    os.makedirs("results", exist_ok=True)
    os.makedirs("figures", exist_ok=True)
    with open("results/metrics.csv", "w") as fh:
        fh.write("epoch,loss\\n1,{loss}\\n")
    with open("figures/curve.png", "wb") as fh:
        fh.write(b"\\x89PNG fake")
    with open("figures/notes.txt", "w") as fh:
        fh.write("not pulled")
    with open("scratch.bin", "wb") as fh:
        fh.write(b"x" * 1000)
    print("written")
""")


def devloop(*args: str, cwd: Path):
    return _devloop(*args, cwd=cwd, timeout=120)


@pytest.fixture
def pull_project(ssh_project: Path) -> Path:
    toml = ssh_project / "devloop.toml"
    toml.write_text(toml.read_text() + '[sync]\npull = ["results/", "figures/*.png"]\n')
    (ssh_project / "nb.py").write_text(NB.format(loss="0.5"))
    return ssh_project


def workdir(project: Path) -> Path:
    return project.parent / "remote" / "work"


def test_a_cells_output_files_come_back_after_the_pass(pull_project: Path) -> None:
    res = devloop("run", "nb.py", "--profile", "ssh-test", "--json", cwd=pull_project)
    assert res.returncode == 0, res.stderr
    evs = events(res.stdout)
    pulled = last(evs, "pull")
    assert sorted(pulled["files"]) == ["figures/curve.png", "results/metrics.csv"]
    assert pulled["conflicts"] == [] and pulled["bytes"] == len("epoch,loss\n1,0.5\n") + len(b"\x89PNG fake")
    assert (pull_project / "results" / "metrics.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert (pull_project / "figures" / "curve.png").read_bytes() == b"\x89PNG fake"
    assert not (pull_project / "figures" / "notes.txt").exists() and not (pull_project / "scratch.bin").exists()
    # nothing changed on the target since: nothing to bring
    assert "pulled 0 files" in devloop("pull", "--profile", "ssh-test", cwd=pull_project).stdout
    # the cell wrote them again (new mtimes): they come again, no conflict (unchanged here)
    again = last(events(devloop("run", "nb.py", "--profile", "ssh-test", "--json", cwd=pull_project).stdout),
                 "pull")
    assert sorted(again["files"]) == ["figures/curve.png", "results/metrics.csv"] and again["conflicts"] == []
    # readable mode says it in one line
    (pull_project / "nb.py").write_text(NB.format(loss="0.25"))
    text = devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).stdout
    assert "pull: 2 files, 27 B in " in text


def test_a_local_change_is_kept_and_the_targets_copy_lands_beside_it(pull_project: Path) -> None:
    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    mine = pull_project / "results" / "metrics.csv"
    mine.write_text("my edit\n")
    (pull_project / "nb.py").write_text(NB.format(loss="0.1"))
    res = devloop("run", "nb.py", "--profile", "ssh-test", "--json", cwd=pull_project)
    assert res.returncode == 0, res.stderr
    pulled = last(events(res.stdout), "pull")
    assert pulled["conflicts"] == [{"path": "results/metrics.csv", "remote": "results/metrics.remote.csv"}]
    assert mine.read_text() == "my edit\n"
    assert (pull_project / "results" / "metrics.remote.csv").read_text() == "epoch,loss\n1,0.1\n"
    assert "pull: conflict: results/metrics.csv changed here since the last pull" in devloop(
        "run", "nb.py", "--profile", "ssh-test", cwd=pull_project).stdout
    assert mine.read_text() == "my edit\n"


def test_devloop_pull_brings_what_changed_on_the_target(pull_project: Path) -> None:
    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    remote = workdir(pull_project) / "results" / "extra.csv"
    remote.write_text("a,b\n")
    res = devloop("pull", "--profile", "ssh-test", cwd=pull_project)
    assert res.returncode == 0, res.stderr
    assert "pulled 1 file, 4 B" in res.stdout
    assert (pull_project / "results" / "extra.csv").read_text() == "a,b\n"
    assert "pulled 0 files" in devloop("pull", "--profile", "ssh-test", cwd=pull_project).stdout


def test_a_symlink_on_the_target_is_not_followed(pull_project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the workdir")
    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    os.symlink(secret, workdir(pull_project) / "results" / "leak.csv")
    os.symlink(tmp_path, workdir(pull_project) / "results" / "dir")
    res = devloop("pull", "--profile", "ssh-test", "--json", cwd=pull_project)
    assert res.returncode == 0, res.stderr
    assert not (pull_project / "results" / "leak.csv").exists()
    assert not (pull_project / "results" / "dir").exists()


def test_pulled_files_start_no_rerun_and_are_not_synced_back(pull_project: Path) -> None:
    watch = Watch(pull_project, "nb.py", "--profile", "ssh-test", timeout=120)
    try:
        watch.until(lambda e: e["event"] == "pull")
        assert (pull_project / "results" / "metrics.csv").exists()
        assert watch.quiet_for(3) == []  # the pulled files changed the project: no pass, no sync
        syncs = [e for e in watch.seen if e["event"] == "sync"]
        # `devloop pull` beside the live session: its own exec of the agent's pull mode, the
        # session's kernel untouched; the files the after-pass pull brought are known to it
        (workdir(pull_project) / "results" / "late.csv").write_text("late\n")
        res = devloop("pull", "--profile", "ssh-test", cwd=pull_project)
        assert "pulled 1 file, 5 B" in res.stdout, res.stdout + res.stderr
        assert not list(pull_project.rglob("*.remote.*"))
        (pull_project / "nb.py").write_text(NB.format(loss="0.3"))
        watch.until(lambda e: e["event"] == "pull")
        assert [e for e in watch.seen if e["event"] == "run_done"].__len__() == 2
        assert all(e.get("files", 0) <= 1 for e in watch.seen if e["event"] == "sync" and e not in syncs)
    finally:
        watch.stop()


def test_a_folder_rule_matches_at_any_depth_and_venvs_are_not_walked(pull_project: Path) -> None:
    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    work = workdir(pull_project)
    for rel in ("exp1/results/metrics.csv", "exp1/figures/b.png", ".venv/results/v.csv", ".venv/pyvenv.cfg"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(rel)
    res = devloop("pull", "--profile", "ssh-test", "--json", cwd=pull_project)
    assert res.returncode == 0, res.stderr
    # `results/` is any folder named results, as in gitignore; `figures/*.png` is anchored
    assert last(events(res.stdout), "pull")["files"] == ["exp1/results/metrics.csv"]
    assert (pull_project / "exp1" / "results" / "metrics.csv").read_text() == "exp1/results/metrics.csv"


def test_a_touched_local_file_is_no_conflict(pull_project: Path) -> None:
    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    mine = pull_project / "results" / "metrics.csv"
    os.utime(mine, ns=(10**18, 10**18))  # a touch / an editor's re-save: the same bytes
    (pull_project / "nb.py").write_text(NB.format(loss="0.7"))
    pulled = last(events(devloop("run", "nb.py", "--profile", "ssh-test", "--json", cwd=pull_project).stdout),
                  "pull")
    assert pulled["conflicts"] == [] and "results/metrics.csv" in pulled["files"]
    assert mine.read_text() == "epoch,loss\n1,0.7\n"


def test_a_deleted_pulled_file_stays_deleted_until_devloop_pull(pull_project: Path) -> None:
    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    curve = pull_project / "figures" / "curve.png"
    curve.unlink()
    (pull_project / "other.py").write_text("# %%\nprint('writes nothing')\n")
    res = devloop("run", "other.py", "--profile", "ssh-test", "--json", cwd=pull_project)
    assert res.returncode == 0, res.stderr
    assert not curve.exists()  # the after-pass pull respects the deletion
    res = devloop("pull", "--profile", "ssh-test", cwd=pull_project)
    assert "pulled 1 file" in res.stdout, res.stdout + res.stderr
    assert curve.read_bytes() == b"\x89PNG fake"


def test_a_pull_waits_for_the_one_in_flight_and_then_has_its_records(pull_project: Path) -> None:
    """The manifest lock: while another puller (a live session's after-pass pull, here this
    test) holds `.devloop/pulled/PROFILE.lock`, `devloop pull` waits, then sees what it wrote."""
    import fcntl
    import subprocess

    from tests.clitools import DEVLOOP

    assert devloop("run", "nb.py", "--profile", "ssh-test", cwd=pull_project).returncode == 0
    (workdir(pull_project) / "results" / "late.csv").write_text("late\n")
    lock = os.open(pull_project / ".devloop" / "pulled" / "ssh-test.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    proc = subprocess.Popen(DEVLOOP + ["pull", "-v", "--profile", "ssh-test", "--json"], cwd=pull_project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "waiting for another pull" in line:
                break
        else:
            raise AssertionError("devloop pull did not wait for the lock")
        assert proc.poll() is None and not (pull_project / "results" / "late.csv").exists()
    finally:
        os.close(lock)  # the other puller is done
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["files"] == ["results/late.csv"]
    state = json.loads((pull_project / ".devloop" / "pulled" / "ssh-test.json").read_text())
    assert {"results/late.csv", "results/metrics.csv", "figures/curve.png"} <= set(state)
