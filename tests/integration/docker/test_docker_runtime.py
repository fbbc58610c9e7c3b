"""Issue 20 runtime on a docker profile, through the real CLI: stdin, sys.exit codes, script
arguments, tracebacks in --json, a reader that leaves -- as on local (test_local_runtime.py)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import DEVLOOP, Watch, events, last, outputs
from tests.integration.test_local_runtime import ASK, EXIT3, READER

pytestmark = pytest.mark.docker

TEST_IMAGE = "devloop-test:hostpy"
P = ("--profile", "docker-test")


@pytest.fixture
def proj(project: Path, docker_host, docker_client, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    (project / "devloop.toml").write_text(f'[project]\nname = "{project.name}"\n')
    (project / "profiles").mkdir()
    (project / "profiles" / "docker-test.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    yield project
    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project.name}"}):
        c.remove(force=True)


def run(proj: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(DEVLOOP + ["run", *args], cwd=proj, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=180)


def test_sys_exit_code_and_the_kernel_survives_in_the_container(proj: Path) -> None:
    (proj / "nb.py").write_text(EXIT3)
    res = run(proj, "nb.py", "--json", *P)
    assert res.returncode == 3, res.stderr
    assert outputs(events(res.stdout)) == "before\n"
    w = Watch(proj, "nb.py", *P, timeout=120)
    try:
        assert last(w.until(lambda e: e["event"] == "run_done"), "run_done")["exit_code"] == 3
        (proj / "nb.py").write_text(EXIT3.replace("if state == 41", "if state == 0")
                                    .replace('print("never")', 'print("state", state)'))
        second = w.until(lambda e: e["event"] == "run_done")
        assert last(second, "run_done")["ok"] is True and "state 41" in outputs(second)
    finally:
        w.stop()


def test_input_reads_the_pipe_and_without_stdin_says_why(proj: Path) -> None:
    (proj / "ask.py").write_text(ASK)
    res = run(proj, "ask.py", "--json", *P, stdin="alice\nb a\nc\n")
    assert res.returncode == 0, res.stderr
    assert outputs(events(res.stdout)) == "name? hello alice\n['a', 'b', 'c']\n"
    res = subprocess.run(DEVLOOP + ["run", "ask.py", "--json", *P], cwd=proj, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=180)
    error = last(events(res.stdout), "error")
    assert res.returncode == 1 and error["type"] == "EOFError"
    assert "devloop's stdin has no more lines" in error["message"]


def test_arguments_tracebacks_and_suggestions_in_the_container(proj: Path) -> None:
    (proj / "nb.py").write_text(textwrap.dedent("""\
        # %%
        import sys
        print(sys.argv)
        X_test = 1
        # %%
        print(X_tes)
        """))
    res = run(proj, "nb.py", "--json", *P, "--", "--epochs", "3")
    evs = events(res.stdout)
    assert outputs(evs, 0) == "['nb.py', '--epochs', '3']\n"
    error = last(evs, "error")
    assert error["message"] == "name 'X_tes' is not defined. Did you mean: 'X_test'?"
    assert error["traceback"].startswith("Traceback (most recent call last):")


def test_a_reader_that_leaves_stops_quietly(proj: Path) -> None:
    (proj / "reader.py").write_text(READER)
    cmd = " ".join(DEVLOOP + ["run", "reader.py", *P])
    res = subprocess.run(f"{cmd} | head -6; exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                         cwd=proj, capture_output=True, text=True, timeout=180)
    assert res.returncode == 141 and res.stderr == ""
