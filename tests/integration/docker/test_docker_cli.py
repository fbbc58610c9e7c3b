"""End to end through the real CLI on a docker profile: run, watch, keep, setup, doctor, snapshot."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import CELLS, Watch, devloop, events, last, outputs

pytestmark = pytest.mark.docker


TEST_IMAGE = "devloop-test:hostpy"  # built by tests/infra/build-test-image.sh (see conftest.py)


def labelled(client, project_name):
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project_name}"})


@pytest.fixture
def docker_project(project: Path, docker_host, docker_client, monkeypatch):
    """A project with nb.py and profiles/docker-test.yaml; DOCKER_HOST set for the CLI."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    (project / "devloop.toml").write_text(f'[project]\nname = "{project.name}"\n')
    (project / "nb.py").write_text(CELLS)
    profiles = project / "profiles"
    profiles.mkdir()
    (profiles / "docker-test.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    yield project
    for c in labelled(docker_client, project.name):
        c.remove(force=True)


def write_profile(project: Path, name: str, extra: str) -> None:
    (project / "profiles" / f"{name}.yaml").write_text(
        f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n{extra}")


def test_run_on_docker_gives_the_same_outputs_as_local(docker_project, docker_client):
    local = devloop("run", "nb.py", "--json", cwd=docker_project)
    remote = devloop("run", "nb.py", "--profile", "docker-test", "--json", cwd=docker_project, timeout=120)
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    lev, rev = events(local.stdout), events(remote.stdout)
    assert outputs(rev) == outputs(lev) == "loaded 3\ndoubled [2, 4, 6]\ntotal 12\n"
    for cell in (0, 1, 2):
        assert outputs(rev, cell) == outputs(lev, cell)
    assert last(rev, "run_done")["ok"] is True and last(rev, "run_done")["cells_run"] == 3
    assert last(rev, "ready")["cwd"] == "/workspace"
    assert labelled(docker_client, docker_project.name) == []  # removed on exit (keep: false)


def test_a_failing_cell_points_at_the_users_line_through_the_container(docker_project):
    (docker_project / "bad.py").write_text("# %% a\nx = 1\n\n# %% b\ny = 2\nraise ValueError('boom')\n")
    res = devloop("run", "bad.py", "--profile", "docker-test", "--json", cwd=docker_project, timeout=120)
    assert res.returncode == 1
    err = last(events(res.stdout), "error")
    assert err["cell"] == 1 and err["file"] == "bad.py" and err["line"] == 6 and "boom" in err["message"]


def test_watch_reruns_only_what_changed_and_ctrl_c_leaves_nothing(docker_project, docker_client):
    w = Watch(docker_project, "nb.py", "--profile", "docker-test")
    try:
        first = w.until(lambda e: e["event"] == "run_done", timeout=90)
        assert [e["cell"] for e in first if e["event"] == "cell_start"] == [0, 1, 2]
        assert len(labelled(docker_client, docker_project.name)) == 1
        time.sleep(0.3)
        (docker_project / "nb.py").write_text(CELLS.replace('print("total", sum(doubled))',
                                                            'print("sum is", sum(doubled))'))
        second = w.until(lambda e: e["event"] == "run_done", timeout=60)
        assert [e["cell"] for e in second if e["event"] == "cell_start"] == [2]
        assert outputs(second) == "sum is 12\n"
    finally:
        code = w.stop(signal.SIGINT)
    assert code == 0
    assert labelled(docker_client, docker_project.name) == []


def test_keep_true_reuses_the_container_on_the_next_run(docker_project, docker_client):
    write_profile(docker_project, "kept", "keep: true\n")
    first = devloop("run", "nb.py", "--profile", "kept", "--json", cwd=docker_project, timeout=120)
    assert first.returncode == 0, first.stderr
    (kept,) = labelled(docker_client, docker_project.name)
    assert kept.status == "running"
    second = devloop("run", "nb.py", "--profile", "kept", "--json", cwd=docker_project, timeout=120)
    assert second.returncode == 0, second.stderr
    (again,) = labelled(docker_client, docker_project.name)
    assert again.id == kept.id
    # the container still had the files: nothing resent
    assert all(e["files"] == 0 for e in events(second.stdout) if e["event"] == "sync")
    procs = again.exec_run(["ps", "-eo", "args"]).output.decode()
    assert "kernel" not in procs  # no kernel left running in the kept container


def test_setup_runs_when_a_dependency_file_changes(docker_project, docker_client):
    write_profile(docker_project, "setup", "keep: true\nsetup: cat requirements.txt >> /tmp/setup-runs\n")
    (docker_project / "requirements.txt").write_text("numpy==1.0\n")
    first = devloop("run", "nb.py", "--profile", "setup", "--json", cwd=docker_project, timeout=120)
    assert first.returncode == 0, first.stderr
    assert any(e["event"] == "target" and e["state"] == "setup" for e in events(first.stdout))
    (docker_project / "requirements.txt").write_text("numpy==2.0\n")
    second = devloop("run", "nb.py", "--profile", "setup", "--json", cwd=docker_project, timeout=120)
    assert last(events(second.stdout), "sync")["dependencies_changed"] == ["requirements.txt"]
    (c,) = labelled(docker_client, docker_project.name)
    assert c.exec_run(["cat", "/tmp/setup-runs"]).output == b"numpy==1.0\nnumpy==2.0\n"
    third = devloop("run", "nb.py", "--profile", "setup", "--json", cwd=docker_project, timeout=120)
    assert not any(e["event"] == "target" and e["state"] == "setup" for e in events(third.stdout))


def test_doctor_flags_packages_missing_in_the_container(docker_project):
    (docker_project / "requirements.txt").write_text("pyyaml>=6\n# a comment\n-r other.txt\n")
    res = devloop("doctor", "--profile", "docker-test", "--json", cwd=docker_project, timeout=120)
    assert res.returncode == 1, res.stderr  # the test image has no pyyaml
    report = json.loads(res.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["docker engine reachable"]["ok"] and checks["python found"]["ok"]
    assert checks["image present"]["ok"] and checks["devloop agent runs"]["ok"]
    assert report["python"]["remote"].startswith("3.")
    (row,) = report["packages"]
    assert row["name"] == "pyyaml" and row["wanted"] == ">=6" and row["local"] and row["remote"] is None
    assert row["status"] == "missing remotely"
    text = devloop("doctor", "--profile", "docker-test", cwd=docker_project, timeout=120).stdout
    assert "missing remotely  <--" in text and "docker engine reachable" in text


def test_doctor_on_an_unreachable_engine_says_so(docker_project, tmp_path):
    write_profile(docker_project, "nowhere", f"docker_host: unix://{tmp_path}/none.sock\n")
    res = devloop("doctor", "--profile", "nowhere", cwd=docker_project, timeout=60)
    assert res.returncode == 1
    assert "FAIL  target started: cannot reach the Docker engine" in res.stdout


def test_snapshot_command_commits_the_code_and_records_it(docker_project, docker_client):
    res = devloop("snapshot", "--profile", "docker-test", "--json", "--run-id", "r1", cwd=docker_project,
                  timeout=120)
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    logged = json.loads((docker_project / ".devloop" / "snapshots.jsonl").read_text().splitlines()[-1])
    assert logged == record and record["run_id"] == "r1" and record["profile"] == "docker-test"
    out = docker_client.containers.run(record["image"], ["cat", "/workspace/nb.py"], remove=True,
                                       network_mode="none")
    assert out.decode() == CELLS  # the snapshot holds the project's code
    assert labelled(docker_client, docker_project.name) == []
    docker_client.images.remove(record["image"], force=True)


OOM_CELL = ("blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 2**20))\n"
            "    blocks[-1][::4096] = b'x' * (len(blocks[-1]) // 4096)\n")


def test_an_oom_killed_cell_names_the_memory_limit_and_the_next_run_starts_fresh(docker_project):
    """The kernel's death by OOM reaches the user as the limit to raise, not a bare exit 137."""
    write_profile(docker_project, "small", "memory: 64Mi\n")
    (docker_project / "oom.py").write_text("# %% setup\nx = 1\nprint('set', x)\n\n# %% hog\n" + OOM_CELL)
    res = devloop("run", "oom.py", "--profile", "small", "--json", cwd=docker_project, timeout=120)
    assert res.returncode == 1, res.stderr
    evs = events(res.stdout)
    err = last(evs, "error")
    assert err["cell"] == 1 and err["type"] == "KernelDied"
    assert "out-of-memory" in err["message"] and "64Mi" in err["message"] and "`memory:`" in err["message"]


def test_an_oom_killed_script_names_the_memory_limit(docker_project):
    write_profile(docker_project, "small", "memory: 64Mi\n")
    (docker_project / "hog.py").write_text(OOM_CELL)
    res = devloop("run", "hog.py", "--profile", "small", "--json", cwd=docker_project, timeout=120)
    assert res.returncode == 137, res.stderr
    err = last(events(res.stdout), "error")
    assert "out-of-memory" in err["message"] and "64Mi" in err["message"]
