"""Fixtures shared by the integration tests of several targets: the real Docker engine.

DEVLOOP_TEST_DOCKER_HOST (set by tests/run.sh via tests/infra/services-up.sh) points at a
running engine; without it the session starts one with tests/infra/docker-up.sh and builds
devloop-test:hostpy with tests/infra/build-test-image.sh. Only DEVLOOP_SKIP_DOCKER=1 skips.
The SSH tests use it too: an ssh profile with `docker:` runs its container on this engine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "tests" / "infra"
TEST_IMAGE = "devloop-test:hostpy"


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
