"""Sessions that outlive the connection on the real Docker engine (issue 14), through the real
CLI: the exec stream broken (the relay inside the container killed), the front end SIGKILLed, a
wrong secret, `devloop stop` (container gone; with keep, no agent process left in it), idle stop
(the container ends through its init and is auto-removed). Scenarios: tests/integration/session_scenarios.py."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.integration import session_scenarios as sc
from tests.integration.docker.conftest import TEST_IMAGE

# in the container (no pkill there): SIGKILL every process whose argv has the word `attach`
KILL_RELAYS = ("import os, signal\n"
               "for p in os.listdir('/proc'):\n"
               "    try:\n"
               "        argv = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\\0')\n"
               "    except (OSError, ValueError):\n"
               "        continue\n"
               "    if p.isdigit() and b'attach' in argv and int(p) != os.getpid():\n"
               "        os.kill(int(p), signal.SIGKILL); print(p)\n")


@pytest.fixture
def dproject(tmp_path: Path, docker_host: str, docker_client):
    """A project (unique name) with profile `dock` on the test engine; its containers removed after."""
    name = f"ds-{secrets.token_hex(4)}"
    root = tmp_path / "proj"
    (root / "profiles").mkdir(parents=True)
    (root / "devloop.toml").write_text(f'[project]\nname = "{name}"\n')
    (root / "profiles" / "dock.yaml").write_text(
        f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\ndocker_host: {docker_host}\n")
    root.joinpath(".name").write_text(name)
    yield root
    for c in containers(docker_client, root):
        c.remove(force=True)


def containers(client, root: Path) -> list:
    name = root.joinpath(".name").read_text()
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={name}"})


def agent_processes(container) -> list[str]:
    """`ps` in the container: anything of devloop's agent still running there."""
    out = container.exec_run(["ps", "-eo", "pid,args"]).output.decode()
    return [line for line in out.splitlines()[1:] if "agent" in line or ".pyz" in line]


def break_exec_stream(client, root: Path) -> None:
    [container] = containers(client, root)
    res = container.exec_run(["python3", "-c", KILL_RELAYS])
    assert res.exit_code == 0 and res.output.split(), res.output


def test_docker_a_broken_exec_stream_reattaches_to_the_same_kernel(dproject: Path, docker_client) -> None:
    sc.drop_reattaches(dproject, "dock", lambda w: break_exec_stream(docker_client, dproject))


def test_docker_a_killed_front_end_detaches_then_secret_and_stop(dproject: Path, docker_client) -> None:
    sc.killed_front_end_detaches(dproject, "dock", lambda: containers(docker_client, dproject))


def test_docker_stop_with_keep_leaves_no_agent_process_in_the_kept_container(dproject: Path, docker_client) -> None:
    profile = dproject / "profiles" / "dock.yaml"
    profile.write_text(profile.read_text() + "keep: true\n")

    def leftovers() -> list:
        [container] = containers(docker_client, dproject)  # kept: still there
        return agent_processes(container)

    sc.killed_front_end_detaches(dproject, "dock", leftovers)


def test_docker_idle_stop_removes_the_container(dproject: Path, docker_client) -> None:
    sc.idle_stop_ends_it(dproject, "dock", lambda: not containers(docker_client, dproject))
