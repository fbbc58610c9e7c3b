"""Sessions that outlive the connection on the test Kubernetes cluster (issue 14), through the
real CLI: the exec stream broken (the relay in the pod killed), the front end SIGKILLed, a wrong
secret, `devloop stop` (pod gone), idle stop. Scenarios: tests/integration/session_scenarios.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.core.config import load_config
from tests.integration import session_scenarios as sc
from tests.integration.docker.test_docker_sessions import KILL_RELAYS
from tests.integration.kube.conftest import pods_of

pytestmark = pytest.mark.kube


def project_pods(core_api, root: Path) -> list:
    return pods_of(core_api, load_config(root).project.name)


def pod_container(docker_client, pod_name: str):
    """The pod's main container on the node's Docker engine (the kubelet runs pods there)."""
    found = [c for c in docker_client.containers.list(ignore_removed=True, filters={"label": f"io.kubernetes.pod.name={pod_name}"})
             if c.labels.get("io.kubernetes.container.name") not in (None, "POD")]
    assert len(found) == 1, found
    return found[0]


def break_exec_stream(core_api, docker_client, root: Path) -> None:
    [pod] = project_pods(core_api, root)
    res = pod_container(docker_client, pod.metadata.name).exec_run(["python3", "-c", KILL_RELAYS])
    assert res.exit_code == 0 and res.output.split(), res.output


def test_kube_a_broken_exec_stream_reattaches_to_the_same_kernel(kube_project: Path, core_api, docker_client) -> None:
    sc.drop_reattaches(kube_project, "kube", lambda w: break_exec_stream(core_api, docker_client, kube_project))


def test_kube_a_killed_front_end_detaches_then_secret_and_stop(kube_project: Path, core_api) -> None:
    sc.killed_front_end_detaches(kube_project, "kube", lambda: project_pods(core_api, kube_project))


def _agent_processes(docker_client, pod_name: str) -> list[str]:
    import docker.errors

    running = [c for c in docker_client.containers.list(ignore_removed=True, filters={"label": f"io.kubernetes.pod.name={pod_name}"})
               if c.labels.get("io.kubernetes.container.name") not in (None, "POD")]
    if not running:  # the pod's container ended (its keeper took the idle stop's SIGTERM)
        return []
    try:
        out = running[0].exec_run(["ps", "-eo", "pid,args"]).output.decode()
    except docker.errors.APIError:  # it is ending right now
        return []
    return [line for line in out.splitlines()[1:] if "agent" in line or ".pyz" in line]


def test_kube_idle_stop_ends_the_session_kernel(kube_project: Path, core_api, docker_client) -> None:
    """The kernel and everything of devloop's in the pod end by themselves after idle_stop."""
    names: list[str] = []

    def gone() -> bool:
        if not names:
            names.extend(p.metadata.name for p in project_pods(core_api, kube_project))
        return not _agent_processes(docker_client, names[0])

    sc.idle_stop_ends_it(kube_project, "kube", gone)


def test_kube_idle_stop_ends_the_pod(kube_project: Path, core_api) -> None:
    """The pod's keeper (PID 1) ends on the supervisor's SIGTERM: the pod stops Running (with
    restartPolicy Never it Succeeds and frees its GPU; the object is deleted by the next start)."""
    def gone() -> bool:
        return all(p.status.phase != "Running" for p in project_pods(core_api, kube_project))

    sc.idle_stop_ends_it(kube_project, "kube", gone, seconds=30)
