"""Sessions that outlive the connection over a real sshd (issue 14), ssh and ssh+docker, through
the real CLI: the link dropped (the server-side sshd process killed), the front end SIGKILLed,
a wrong secret, `devloop stop`, idle stop. The scenarios are in tests/integration/session_scenarios.py."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.integration import session_scenarios as sc

pytestmark = pytest.mark.ssh

TEST_IMAGE = "devloop-test:hostpy"


def _procs() -> list[tuple[int, list[bytes], str]]:
    """(pid, argv, cwd) of every process of this machine we can read."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        out.append((int(entry.name), argv, cwd))
    return out


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmd(pid: int) -> bytes:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes()


def in_workdir(workdir: Path) -> list[tuple[int, list[bytes]]]:
    """Processes running in the remote workdir (the session kernel, its supervisor, relays)."""
    wd = str(workdir.resolve())
    return [(pid, argv) for pid, argv, cwd in _procs() if cwd == wd or cwd.startswith(wd + "/")]


def kill_relay_connections(workdir: Path) -> None:
    """Drop the SSH connection: SIGKILL the server-side sshd process that carries the relay."""
    relays = [pid for pid, argv in in_workdir(workdir) if b"attach" in argv]
    assert relays, in_workdir(workdir)
    killed = 0
    for pid in relays:
        parent = _parent(pid)
        assert b"sshd" in _cmd(parent), _cmd(parent)
        os.kill(parent, signal.SIGKILL)
        killed += 1
    assert killed


@pytest.fixture
def workdir(ssh_project: Path) -> Path:
    return ssh_project.parent / "remote" / "work"


def test_ssh_a_dropped_connection_reattaches_to_the_same_kernel(ssh_project: Path, workdir: Path) -> None:
    sc.drop_reattaches(ssh_project, "ssh-test", lambda w: kill_relay_connections(workdir))


def test_ssh_a_killed_front_end_detaches_then_secret_and_stop(ssh_project: Path, workdir: Path) -> None:
    sc.killed_front_end_detaches(ssh_project, "ssh-test", lambda: in_workdir(workdir))


def test_ssh_idle_stop_ends_the_session(ssh_project: Path, workdir: Path) -> None:
    sc.idle_stop_ends_it(ssh_project, "ssh-test", lambda: not in_workdir(workdir))


# ---------------------------------------------------------------------------- ssh + docker
@pytest.fixture
def box(tmp_path: Path, ssh_home, make_project, docker_host: str, docker_client):
    """A project whose profile `box` is the test sshd with `docker:`; its containers removed after."""
    block = textwrap.dedent(f"""\
        docker:
          image: {TEST_IMAGE}
          network: none
          docker_host: {docker_host}
        """)
    project = make_project(tmp_path / "proj", known_hosts=ssh_home.known_hosts, workdir=tmp_path / "host-work",
                           extra=block, name="box")
    yield project
    for c in box_containers(docker_client):
        c.remove(force=True)


def box_containers(client) -> list:
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}=sshproj"})


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fds = Path("/proc") / str(pid) / "fd"
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp(inodes: set[str]) -> list[tuple[str, str]]:
    """(local, remote) addresses (hex, as /proc/net/tcp writes them) of these socket inodes."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[9] in inodes:
                found.append((f[1], f[2]))
    return found


def kill_dial_stdio_connections(w) -> None:  # noqa: ANN001 - clitools.Watch
    """Drop this front end's SSH connection: SIGKILL the server-side sshd processes whose TCP
    peer is the `devloop watch` process and that carry `docker system dial-stdio` (only ours:
    other tests may use the same sshd at the same time)."""
    mine = {local for local, _ in _tcp(_socket_inodes(w.proc.pid))}
    parents = {_parent(pid) for pid, argv, _ in _procs() if argv[:3] == [b"docker", b"system", b"dial-stdio"]}
    ours = [pid for pid in parents if any(remote in mine for _, remote in _tcp(_socket_inodes(pid)))]
    assert ours, (mine, parents)
    for pid in ours:
        assert b"sshd" in _cmd(pid), _cmd(pid)
        os.kill(pid, signal.SIGKILL)


@pytest.mark.docker
def test_ssh_docker_a_dropped_connection_reattaches_to_the_same_kernel(box: Path) -> None:
    sc.drop_reattaches(box, "box", kill_dial_stdio_connections)


@pytest.mark.docker
def test_ssh_docker_a_killed_front_end_detaches_then_secret_and_stop(box: Path, docker_client) -> None:
    sc.killed_front_end_detaches(box, "box", lambda: box_containers(docker_client))


@pytest.mark.docker
def test_ssh_docker_idle_stop_removes_the_container(box: Path, docker_client) -> None:
    sc.idle_stop_ends_it(box, "box", lambda: not box_containers(docker_client))
