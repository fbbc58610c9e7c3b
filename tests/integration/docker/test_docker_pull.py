"""`[sync] pull` on the Docker target: what a cell writes comes back before `devloop run`'s
container is removed; a local change is kept beside the target's copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import devloop, events, last

pytestmark = pytest.mark.docker

TEST_IMAGE = "devloop-test:hostpy"
NB = ("# %%\nimport os\nos.makedirs('results', exist_ok=True)\n"
      "open('results/metrics.csv', 'w').write('epoch,acc\\n1,{acc}\\n')\n"
      "open('results/big.bin', 'wb').write(b'b' * {big})\nprint('done')\n")


@pytest.fixture
def docker_project(project: Path, docker_host, docker_client, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    (project / "devloop.toml").write_text(f'[project]\nname = "{project.name}"\n'
                                          '[sync]\npull = ["results/*.csv", "results/*.bin"]\npull_max_mb = 1\n')
    (project / "profiles").mkdir()
    (project / "profiles" / "docker-test.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    yield project
    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project.name}"}):
        c.remove(force=True)


def run(project: Path) -> dict:
    res = devloop("run", "nb.py", "--profile", "docker-test", "--json", cwd=project, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    return last(events(res.stdout), "pull")


def test_outputs_come_back_from_the_container_and_a_conflict_is_kept(docker_project: Path) -> None:
    (docker_project / "nb.py").write_text(NB.format(acc="0.5", big=2 << 20))
    first = run(docker_project)
    assert first["files"] == ["results/metrics.csv"]  # the 2 MB file is over pull_max_mb = 1
    assert first["deferred"] == ["results/big.bin"]
    assert (docker_project / "results" / "metrics.csv").read_text() == "epoch,acc\n1,0.5\n"
    assert not (docker_project / "results" / "big.bin").exists()
    mine = docker_project / "results" / "metrics.csv"
    mine.write_text("edited here\n")
    (docker_project / "nb.py").write_text(NB.format(acc="0.9", big=10))
    second = run(docker_project)
    assert second["conflicts"] == [{"path": "results/metrics.csv", "remote": "results/metrics.remote.csv"}]
    assert second["files"] == ["results/big.bin"]
    assert mine.read_text() == "edited here\n"
    assert (docker_project / "results" / "metrics.remote.csv").read_text() == "epoch,acc\n1,0.9\n"
