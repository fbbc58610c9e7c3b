"""Port forwarding into a container with no network at all (`network: none`): the agent's connect
relay over docker exec. See ports_scenario.py."""

from __future__ import annotations

import secrets
from pathlib import Path

from devloop.core import events as ev
from devloop.core.config import load_config
from devloop.core.targets.docker import LABEL_PROJECT
from tests.integration.docker.conftest import TEST_IMAGE
from tests.integration.ports_scenario import forward_scenario


async def test_docker_forward_download_concurrency_refusal_busy_and_cleanup(tmp_path: Path, docker_host: str,
                                                                           docker_client):
    name = f"dp-{secrets.token_hex(4)}"
    root = tmp_path / "proj"
    (root / "profiles").mkdir(parents=True)
    (root / "devloop.toml").write_text(f'[project]\nname = "{name}"\n')
    (root / "profiles" / "dock.yaml").write_text(
        f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\ndocker_host: {docker_host}\n")
    config = load_config(root)
    try:
        events = await forward_scenario(root, config, config.profile("dock"), remote_port=8765)
        assert {e.via for e in events if isinstance(e, ev.PortForward)} == {"agent relay"}
        # the container (and every relay exec in it) is gone with the session
        assert docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={name}"}) == []
    finally:
        for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={name}"}):
            c.remove(force=True)
