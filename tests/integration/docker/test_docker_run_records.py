"""Run records on a docker profile: the record names the container's image, and promote cites
the green run only for the image that run used."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from devloop.core.snapshots import record_snapshot
from devloop.core.targets.base import Snapshot
from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import devloop

pytestmark = pytest.mark.docker

TEST_IMAGE = "devloop-test:hostpy"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
CELLS = textwrap.dedent("""\
    # %% one
    x = 1

    # %% two
    print(x + 1)
    """)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(project: Path, docker_host, docker_client, monkeypatch):
    for key, value in {**GIT_ENV, "DOCKER_HOST": docker_host}.items():
        monkeypatch.setenv(key, value)
    (project / "devloop.toml").write_text(f'[project]\nname = "{project.name}"\nentry = "nb.py"\n')
    (project / "nb.py").write_text(CELLS)
    (project / ".gitignore").write_text(".devloop/\n")
    (project / "profiles").mkdir()
    (project / "profiles" / "box.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "remote", "add", "origin", "https://github.com/acme/box.git")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "init")
    yield project
    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project.name}"}):
        c.remove(force=True)


def test_a_docker_run_records_its_image_and_promote_cites_it_for_that_image(repo: Path, docker_client) -> None:
    res = devloop("run", "-p", "box", "nb.py", cwd=repo, timeout=180)
    assert res.returncode == 0, res.stderr
    (record,) = [json.loads(line) for line in (repo / ".devloop" / "runs.jsonl").read_text().splitlines()]
    image = docker_client.images.get(TEST_IMAGE)
    assert record["target"]["kind"] == "docker" and record["target"]["id"]
    assert record["image"]["ref"] == TEST_IMAGE
    assert record["image"]["digest"] in [image.id, *(image.attrs.get("RepoDigests") or [])]
    assert [c["state"] for c in record["cells"]] == ["ok", "ok"]

    # the profile names a tag: an unpinned promote compares the image it names
    cited = devloop("promote", "-p", "box", "--allow-unpinned", "--require-green", cwd=repo)
    assert cited.returncode == 0, cited.stderr
    assert f"run id {record['run_id']}" in cited.stdout

    # `devloop snapshot` records the green run its image holds the code of; promote pinning
    # that snapshot cites the run through it
    snap = devloop("snapshot", "-p", "box", "--json", cwd=repo, timeout=180)
    assert snap.returncode == 0, snap.stderr
    snapped = json.loads(snap.stdout.strip().splitlines()[-1])
    try:
        assert snapped["run_id"] == record["run_id"]
        via_snapshot = devloop("promote", "-p", "box", "--allow-unpinned", "--require-green", cwd=repo)
        assert via_snapshot.returncode == 0, via_snapshot.stderr
        assert f"run id {record['run_id']}" in via_snapshot.stdout

        # a newer snapshot of another image, not taken for that run: no green run of it
        record_snapshot(repo, Snapshot(image="registry.example.com/other:1", image_id="sha256:" + "cd" * 32,
                                       created="2026-11-30T10:00:00+00:00",
                                       details={"repo_digest": "registry.example.com/other@sha256:" + "0" * 64}),
                        profile="box")
        refused = devloop("promote", "-p", "box", "--require-green", cwd=repo)
        assert refused.returncode == 2, refused.stdout
        assert "no green run of this code on this profile" in refused.stderr and "pinned image" in refused.stderr
    finally:
        docker_client.images.remove(snapped["image"], force=True)
