"""Fixtures for the Docker tests: a real engine (private dockerd) and the offline test image.

DEVLOOP_TEST_DOCKER_HOST (set by tests/run.sh via tests/infra/services-up.sh) points at a
running engine; without it the session starts one with tests/infra/docker-up.sh and builds
devloop-test:hostpy with tests/infra/build-test-image.sh. Only DEVLOOP_SKIP_DOCKER=1 skips.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from devloop.core.config import Config, Profile, ProjectConfig

REPO = Path(__file__).resolve().parents[3]
INFRA = REPO / "tests" / "infra"
TEST_IMAGE = "devloop-test:hostpy"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_host() -> str:
    """DOCKER_HOST of the test engine (started here when the runner did not start one)."""
    if os.environ.get("DEVLOOP_SKIP_DOCKER") == "1":
        pytest.skip("DOCKER TESTS SKIPPED because DEVLOOP_SKIP_DOCKER=1 is set: the Docker target "
                    "is NOT tested in this run")
    host = os.environ.get("DEVLOOP_TEST_DOCKER_HOST")
    if not host:
        up = subprocess.run(["bash", str(INFRA / "docker-up.sh")], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            raise RuntimeError(f"tests/infra/docker-up.sh failed:\n{up.stdout}\n{up.stderr}")
        last = up.stdout.strip().splitlines()[-1]
        host = last.split("DOCKER_HOST=", 1)[1].strip()
    built = subprocess.run(["bash", str(INFRA / "build-test-image.sh"), TEST_IMAGE], capture_output=True,
                           text=True, timeout=600, env={**os.environ, "DOCKER_HOST": host})
    if built.returncode != 0:
        raise RuntimeError(f"tests/infra/build-test-image.sh failed:\n{built.stdout}\n{built.stderr}")
    return host


@pytest.fixture(scope="session")
def docker_client(docker_host):
    import docker

    client = docker.DockerClient(base_url=docker_host)
    yield client
    client.close()


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
    for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
        c.remove(force=True)
