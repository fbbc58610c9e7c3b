"""An ssh profile with `docker:`: the dev container on the SSH host's Docker engine.

Real parts only: the OpenSSH server on 127.0.0.1 (the "GPU box") and the private Docker engine
(its engine, reached from the SSH session with `docker system dial-stdio`, as the docker CLI does
for ssh:// hosts). The container gets the offline test image devloop-test:hostpy.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.core.config import load_config
from devloop.core.session import Session
from devloop.core.ssh_connect import UnknownHostKey
from devloop.core.targets import create_target
from devloop.core.targets.base import TargetError
from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import RELAYED_CELLS as CELLS
from tests.clitools import devloop, events, last, observable

pytestmark = [pytest.mark.ssh, pytest.mark.docker]

TEST_IMAGE = "devloop-test:hostpy"


def docker_block(docker_host: str, **extra: str) -> str:
    lines = {"image": TEST_IMAGE, "network": "none", "docker_host": docker_host, **extra}
    return "docker:\n" + "".join(f"  {k}: {v}\n" for k, v in lines.items())


@pytest.fixture
def box(tmp_path: Path, ssh_home, make_project, docker_host: str, docker_client):
    """A project whose profile `box` is an ssh host with `docker:`; containers removed after."""
    project = make_project(tmp_path / "proj", known_hosts=ssh_home.known_hosts, workdir=tmp_path / "host-work",
                           extra=docker_block(docker_host), name="box")
    yield project
    for c in containers(docker_client):
        c.remove(force=True)


def containers(client) -> list:
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}=sshproj"})


def rewrite_profile(project: Path, ssh_home, docker_host: str, **extra: str) -> None:
    (project / "profiles" / "box.yaml").write_text(
        f"kind: ssh\nhost: devloop-test\nknown_hosts: {ssh_home.known_hosts}\n" + docker_block(docker_host, **extra))


def test_run_in_a_container_on_the_ssh_host_gives_the_same_events_as_local(box: Path, docker_client) -> None:
    (box / "nb.py").write_text(CELLS)
    local = devloop("run", "nb.py", "--json", cwd=box)
    remote = devloop("run", "nb.py", "--profile", "box", "--json", cwd=box, timeout=120)
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    evs = events(remote.stdout)
    assert observable(evs) == observable(events(local.stdout))
    assert last(evs, "ready")["cwd"] == "/workspace"  # the image's WORKDIR, inside the container
    ready = [e for e in evs if e["event"] == "target" and e["state"] == "ready"][-1]
    assert ready["kind"] == "ssh" and "@devloop-test" in ready["message"]
    assert containers(docker_client) == []  # removed on exit (keep: false)


async def test_session_reruns_the_edited_cell_in_the_container_and_removes_it(box: Path, docker_client) -> None:
    nb = box / "nb.py"
    nb.write_text(CELLS)
    config = load_config(box)
    seen: list[ev.Event] = []
    session = Session(config, config.profile("box"), nb, seen.append)
    try:
        info = await session.start()
        assert info.kind == "ssh" and info.details["host"] == "127.0.0.1"
        assert session.target._client.api.base_url == "http+docker://ssh"  # the engine over our SSH
        [container] = containers(docker_client)
        assert container.id.startswith(info.details["container_id"])
        assert (await session.run_all()).ok
        seen.clear()
        nb.write_text(CELLS.replace('print("total", sum(doubled))', 'print("sum is", sum(doubled))'))
        done = await session.on_changes({"nb.py"})
        assert done is not None and done.ok
        assert [e.cell for e in seen if isinstance(e, ev.CellStart)] == [2]
        assert "sum is 12" in "".join(e.text for e in seen if isinstance(e, ev.Output))
        code, out = container.exec_run(["cat", "/workspace/nb.py"])
        assert code == 0 and b"sum is" in out  # synced into the container through the agent
    finally:
        await session.close()
    assert containers(docker_client) == []


async def test_kill_stops_the_process_inside_the_container(box: Path, docker_client) -> None:
    config = load_config(box)
    target = create_target(config.profile("box"), config)
    await target.start()
    try:
        channel = await target.spawn(["sh", "-c", "echo up; exec sleep 1000"])
        assert await channel.readline() == b"up\n"
        [container] = containers(docker_client)
        assert b"sleep 1000" in container.exec_run(["ps", "-eo", "args"]).output
        await channel.kill()
        assert b"sleep 1000" not in container.exec_run(["ps", "-eo", "args"]).output
    finally:
        await target.stop()


async def test_keep_leaves_the_container_running_and_the_next_start_adopts_it(
        box: Path, ssh_home, docker_host: str, docker_client) -> None:
    rewrite_profile(box, ssh_home, docker_host, keep="true")
    config = load_config(box)
    first = create_target(config.profile("box"), config)
    info = await first.start()
    await first.stop()
    [kept] = containers(docker_client)
    assert kept.status == "running"
    second = create_target(config.profile("box"), config)
    again = await second.start()
    assert again.details["container_id"] == info.details["container_id"]
    await second.stop()


async def test_missing_image_on_the_host_is_never_pulled(box: Path, ssh_home, docker_host: str, docker_client) -> None:
    rewrite_profile(box, ssh_home, docker_host, image="registry.invalid/team/trainer:1.0")
    config = load_config(box)
    target = create_target(config.profile("box"), config)
    with pytest.raises(TargetError) as err:
        await target.start()
    await target.stop()
    text = str(err.value)
    assert "registry.invalid/team/trainer:1.0" in text and "never pulls" in text
    assert "root@devloop-test" in text  # which host's engine lacks it
    assert containers(docker_client) == []


async def test_gpus_on_a_host_engine_without_gpu_runtime_fail_fast(box: Path, ssh_home, docker_host: str,
                                                                   docker_client) -> None:
    rewrite_profile(box, ssh_home, docker_host, gpus="all")
    config = load_config(box)
    target = create_target(config.profile("box"), config)
    with pytest.raises(TargetError, match="has no GPU runtime"):
        await target.start()
    await target.stop()
    assert containers(docker_client) == []


async def test_an_unreachable_engine_on_the_host_says_which_and_how_to_fix(box: Path, ssh_home, tmp_path: Path) -> None:
    rewrite_profile(box, ssh_home, f"unix://{tmp_path}/no-engine.sock")
    config = load_config(box)
    target = create_target(config.profile("box"), config)
    with pytest.raises(TargetError) as err:
        await target.start()
    await target.stop()
    assert "cannot reach the Docker engine on root@devloop-test" in str(err.value)
    assert "no-engine.sock" in str(err.value) and "docker_host" in err.value.hint


async def test_an_unknown_host_key_is_refused_before_any_docker_call(box: Path, ssh_home, docker_client) -> None:
    ssh_home.known_hosts.write_text("")
    config = load_config(box)
    target = create_target(config.profile("box"), config)
    with pytest.raises(UnknownHostKey) as err:
        await target.start()
    await target.stop()
    assert "devloop trust box" in str(err.value) + err.value.hint
    assert containers(docker_client) == []


def test_relative_volumes_are_refused_with_the_host_path_rule(box: Path, ssh_home, docker_host: str) -> None:
    (box / "profiles" / "box.yaml").write_text(textwrap.dedent(f"""\
        kind: ssh
        host: devloop-test
        known_hosts: {ssh_home.known_hosts}
        docker:
          image: {TEST_IMAGE}
          docker_host: {docker_host}
          volumes: ["./data:/data"]
        """))
    (box / "nb.py").write_text("print('x')\n")
    res = devloop("run", "nb.py", "--profile", "box", cwd=box, timeout=120)
    assert res.returncode == 2
    assert "absolute path on the SSH host" in res.stderr and "Traceback" not in res.stderr


async def test_doctor_checks_ssh_then_the_hosts_engine(box: Path) -> None:
    config = load_config(box)
    target = create_target(config.profile("box"), config)
    try:
        await target.start()
        checks = {name: (ok, detail) for name, ok, detail in await target.doctor_checks()}
    finally:
        await target.stop()
    assert checks["reachable"][0] and checks["authenticated"][0]
    assert checks["docker engine reachable"][0] and "over ssh" in checks["docker engine reachable"][1]
    assert checks["python found"][0]



SLOW = textwrap.dedent("""\
    # %% load
    import helper
    print("loaded", helper.VALUE, flush=True)

    # %% wait
    import time
    print("waiting", flush=True)
    time.sleep(600)
    """)


def _dial_stdio_sshd_sessions() -> set[int]:
    """The server-side sshd processes that carry devloop's dial-stdio channels."""
    parents = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if args[:3] == [b"docker", b"system", b"dial-stdio"]:
                stat = (proc / "stat").read_text()
                parents.add(int(stat.rsplit(")", 1)[1].split()[1]))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return parents


def test_a_dropped_ssh_connection_mid_cell_reconnects_to_the_same_container(box: Path, docker_client) -> None:
    """The container outlives the connection: the files there are kept and only the change is sent."""
    import os
    import signal
    import time

    from tests.clitools import Watch

    (box / "helper.py").write_text("VALUE = 41\n")
    (box / "nb.py").write_text(SLOW)
    w = Watch(box, "-vv", "nb.py", "--profile", "box", timeout=90)
    try:
        w.until(lambda e: e["event"] == "output" and "waiting" in e["text"])
        [container] = containers(docker_client)
        sessions = _dial_stdio_sshd_sessions()
        assert sessions
        for pid in sessions:
            os.kill(pid, signal.SIGKILL)  # the SSH connection dies mid-cell
        # the session kernel lives in the container: the drop is a detach, devloop reattaches
        back = w.until(lambda e: e["event"] == "target" and e["state"] == "ready" and "reattached" in e["message"])
        assert not [e for e in back if e["event"] == "error"]
        assert any(e["event"] == "target" and e["state"] == "reconnecting" for e in back)

        time.sleep(0.3)
        (box / "helper.py").write_text("VALUE = 42\n")
        (box / "nb.py").write_text(SLOW.replace("time.sleep(600)", "print('done waiting')"))
        evs = w.until(lambda e: e["event"] == "run_done" and e["ok"])
        syncs = [e for e in evs if e["event"] == "sync"]
        assert syncs and sum(s["files"] for s in syncs) == 2 and all(s["deleted"] == 0 for s in syncs)
        text = "".join(e["text"] for e in evs if e["event"] == "output")
        assert "loaded 42" in text and "done waiting" in text
        assert [c.id for c in containers(docker_client)] == [container.id]  # adopted, not replaced
        ps = container.exec_run(["ps", "-eo", "args"]).output
        assert ps.count(b"kernel --serve") == 2, ps  # one session kernel (and its supervisor)
        assert ps.count(b" attach") == 1, ps  # the lost connection's relay is gone
    finally:
        assert w.stop() == 0
    assert containers(docker_client) == []
