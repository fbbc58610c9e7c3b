"""Fixtures for the Docker tests: a project folder and DockerTargets on the real engine
(the engine and its test image come from tests/integration/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devloop.core.config import Config, Profile, ProjectConfig

TEST_IMAGE = "devloop-test:hostpy"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def project(tmp_path) -> Path:
    """An empty project folder with a unique name (so tests never share containers)."""
    root = tmp_path / f"proj-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    return root


@pytest.fixture
def make_target(docker_host, docker_client, project):
    """make_target(**profile_fields) -> a DockerTarget on the test engine; all stopped (and every
    container labelled for the test project removed) at teardown."""
    from devloop.core.targets.docker import LABEL_PROJECT, DockerTarget

    made = []
    name = project.name

    def make(profile_name: str = "docker-test", root: Path | None = None, **fields):
        fields.setdefault("image", TEST_IMAGE)
        fields.setdefault("network", "none")
        fields.setdefault("docker_host", docker_host)
        profile = Profile(name=profile_name, kind="docker", **fields)
        config = Config(root=root or project, file=None, project=ProjectConfig(name=name))
        target = DockerTarget(profile, config)
        made.append(target)
        return target

    yield make
    for target in made:
        target.stop_now()
    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
        c.remove(force=True)
