"""Port forwarding into a pod with no Service: the agent's connect relay over kubernetes exec.
See ports_scenario.py. (The test pods use the host network: the node has no pod network, so
the server's port is taken from this machine's free ones.)"""

from __future__ import annotations

from pathlib import Path

from devloop.core import events as ev
from devloop.core.config import load_config
from tests.integration.ports_scenario import forward_scenario, free_port


async def test_kube_forward_download_concurrency_refusal_busy_and_cleanup(kube_project: Path, core_api):
    config = load_config(kube_project)
    remote = free_port()
    events = await forward_scenario(kube_project, config, config.profile("kube"), remote_port=remote)
    assert {e.via for e in events if isinstance(e, ev.PortForward)} == {"agent relay"}
    label = config.project.name
    pods = core_api.list_namespaced_pod("default", label_selector=f"devloop.project={label}").items
    assert all(p.metadata.deletion_timestamp is not None for p in pods)
