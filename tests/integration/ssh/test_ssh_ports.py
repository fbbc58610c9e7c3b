"""Port forwarding on the SSH target (paramiko direct-tcpip on the real sshd) and on ssh+docker
(the agent's connect relay in a container with no network): see ports_scenario.py. On SSH the
connection is also dropped mid-session: the forward works again once the session reattached."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.core.config import load_config
from tests.integration.ports_scenario import forward_scenario, free_port, relays_on_this_machine


async def _drop(session) -> None:
    session.target.conn.transport.close()  # the link dies under the session (as a network drop)
    await asyncio.sleep(0.2)


async def test_ssh_forward_download_concurrency_refusal_busy_drop_and_cleanup(ssh_project: Path):
    config = load_config(ssh_project)
    remote = free_port()  # the sshd runs on this machine: the target's port space is ours
    events = await forward_scenario(ssh_project, config, config.profile("ssh-test"), remote_port=remote,
                                    drop=_drop)
    assert {e.via for e in events if isinstance(e, ev.PortForward)} == {"ssh direct-tcpip"}
    assert relays_on_this_machine(config.profile("ssh-test").workdir) == []  # (direct-tcpip: none ran)


# ---------------------------------------------------------------------------- ssh + docker
from tests.integration.ssh.test_ssh_sessions import box, box_containers  # noqa: E402,F401 - the fixture


@pytest.mark.docker
async def test_ssh_docker_forward_into_a_container_without_network_and_after_a_drop(box: Path, docker_client):
    config = load_config(box)
    events = await forward_scenario(box, config, config.profile("box"), remote_port=8765, drop=_drop)
    assert {e.via for e in events if isinstance(e, ev.PortForward)} == {"agent relay"}
    assert box_containers(docker_client) == []  # the container, and the relay in it, are gone
