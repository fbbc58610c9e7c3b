"""Cell semantics through the Docker target (issues 20.3, 20.4, 18.6): magics in an image without
IPython (the agent's stdlib way), other-language cells skipped, a syntax error before any cell."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.clitools import devloop, events, outputs

TEST_IMAGE = "devloop-test:hostpy"

pytestmark = pytest.mark.docker


@pytest.fixture
def project(tmp_path: Path, docker_host: str, docker_client):
    root = tmp_path / "semantics"
    (root / "profiles").mkdir(parents=True)
    (root / "profiles" / "docker-test.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    yield root
    from devloop.core.targets.docker import LABEL_PROJECT

    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={root.name}"}):
        c.remove(force=True)


def test_magics_and_other_languages_in_a_container(project: Path, docker_host: str) -> None:
    (project / "nb.py").write_text(textwrap.dedent('''\
        # %% setup {"tags": ["parameters"]}
        %matplotlib inline
        import os
        %env GREETING=hi
        !echo shell says $GREETING
        where = !pwd
        print("cwd", where[0])

        # %% language="R"
        # print("R ran")

        # %% timed
        %%time
        total = sum(range(1000))
        print("total", total)
        '''))
    res = devloop("run", "nb.py", "--json", "--profile", "docker-test", cwd=project,
                  env={"DOCKER_HOST": docker_host}, timeout=180)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    evs = events(res.stdout)
    assert [(e["cell"], e["title"]) for e in evs if e["event"] == "cell_start"] == [(0, "setup"), (1, "timed")]
    assert "env: GREETING=hi\nshell says hi\n" in outputs(evs, 0)  # $GREETING: the shell's
    assert "cwd /workspace\n" in outputs(evs, 0)
    assert "total 499500\n" in outputs(evs, 1) and "Wall time: " in outputs(evs, 1)
    assert "R ran" not in outputs(evs)
    assert any("skipped the R cell at line 9" in e["message"] for e in evs if e["event"] == "log")


def test_a_syntax_error_in_a_container_stops_the_pass_before_it_starts(project: Path, docker_host: str) -> None:
    (project / "nb.py").write_text('# %%\nprint("first")\n# %%\nx = [1,\n# %%\nprint("never")\n')
    res = devloop("run", "nb.py", "--json", "--profile", "docker-test", cwd=project,
                  env={"DOCKER_HOST": docker_host}, timeout=180)
    assert res.returncode == 1
    evs = events(res.stdout)
    err = [e for e in evs if e["event"] == "error"][0]
    assert (err["cell"], err["type"], err["file"], err["line"]) == (1, "SyntaxError", "nb.py", 4)
    assert outputs(evs) == ""
