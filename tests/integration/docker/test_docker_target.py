"""DockerTarget against the real test engine: lifecycle, exec channel, sync, snapshot."""

from __future__ import annotations

import json

import pytest

from devloop.core.agent_bundle import bundle_name
from devloop.core.targets.base import ConnectionLost
from devloop.core.targets.docker import AGENT_DIR, LABEL_PROFILE, LABEL_PROJECT

pytestmark = pytest.mark.docker


def labelled(client, project_name):
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project_name}"})


async def read_all(channel) -> list[bytes]:
    lines = []
    while line := await channel.readline():
        lines.append(line)
    return lines


async def test_start_creates_a_labelled_container_with_the_agent(make_target, docker_client, project):
    target = make_target()
    info = await target.start()
    assert info.kind == "docker" and info.workdir == "/workspace"  # the image's WORKDIR
    assert info.image == "devloop-test:hostpy"
    assert info.image_digest.startswith("sha256:")
    (container,) = labelled(docker_client, project.name)
    assert container.status == "running"
    assert container.labels[LABEL_PROFILE] == "docker-test"
    assert target.agent_argv("kernel")[2] == f"{AGENT_DIR}/{bundle_name()}"
    assert container.exec_run(["ls", f"{AGENT_DIR}/{bundle_name()}"]).exit_code == 0


async def test_start_is_idempotent_and_keep_reuses_the_container_across_sessions(make_target, docker_client, project):
    first = make_target(keep=True)
    info = await first.start()
    assert (await first.start()).id == info.id
    await first.stop()
    (kept,) = labelled(docker_client, project.name)
    assert kept.status == "running"
    second = make_target(keep=True)
    assert (await second.start()).id == info.id  # the next session finds it by its labels


async def test_a_changed_profile_replaces_the_container(make_target, docker_client, project):
    info = await make_target(keep=True, env={"A": "1"}).start()
    info2 = await make_target(keep=True, env={"A": "2"}).start()
    assert info2.id != info.id
    (only,) = labelled(docker_client, project.name)
    assert only.id.startswith(info2.id)


async def test_profile_settings_reach_the_container(make_target, docker_client, project, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("mounted")
    target = make_target(env={"FOO": "bar"}, workdir="/work/app", shm_size="128Mi", memory="256Mi",
                         cpu="1", volumes=(f"{data}:/data:ro",))
    info = await target.start()
    assert info.workdir == "/work/app"
    (c,) = labelled(docker_client, project.name)
    host = c.attrs["HostConfig"]
    assert host["ShmSize"] == 128 * 2**20 and host["Memory"] == 256 * 2**20 and host["NanoCpus"] == 10**9
    channel = await target.spawn(["sh", "-c", "echo $FOO; pwd; cat /data/x.txt; touch /data/y 2>/dev/null || echo ro"])
    assert await read_all(channel) == [b"bar\n", b"/work/app\n", b"mountedro\n"]
    assert await channel.wait() == 0


async def test_spawn_streams_stdout_lines_stderr_tail_stdin_eof_and_exit_code(make_target):
    target = make_target()
    await target.start()
    code = ("import sys\nprint('first')\nsys.stderr.write('a warning\\n')\n"
            "data = sys.stdin.buffer.read()\nprint(len(data), data[:5].decode())\nsys.exit(3)\n")
    channel = await target.spawn(["python3", "-c", code], env={"X": "1"})
    payload = b"hello" + b"x" * 300_000  # larger than one socket buffer and one docker frame
    await channel.send(payload)
    await channel.close_stdin()
    assert await read_all(channel) == [b"first\n", f"{len(payload)} hello\n".encode()]
    assert await channel.wait() == 3
    assert "a warning" in channel.stderr_tail()


async def test_an_exec_the_engine_cannot_start_reports_on_stderr_not_stdout(make_target):
    target = make_target()
    await target.start()
    channel = await target.spawn(["/no/such/program"])
    assert await read_all(channel) == []
    assert await channel.wait() == 127
    assert "/no/such/program" in channel.stderr_tail()


async def test_kill_stops_the_process_and_what_it_started(make_target, docker_client, project):
    target = make_target()
    await target.start()
    channel = await target.spawn(["sh", "-c", "sleep 1000 & sleep 1000; wait"])
    assert channel.pid is None or channel.pid > 0
    await channel.kill()
    await channel.kill()  # twice is fine
    assert await channel.wait() == 137
    (c,) = labelled(docker_client, project.name)
    ps = c.exec_run(["ps", "-eo", "args"]).output.decode()
    assert "sleep 1000" not in ps


async def test_the_agent_kernel_runs_cells_over_the_exec_socket(make_target):
    target = make_target()
    info = await target.start()
    channel = await target.spawn(target.agent_argv("kernel"), cwd=info.workdir)
    ready = json.loads(await channel.readline())
    assert ready["type"] == "ready" and ready["cwd"] == "/workspace" and ready["python"].startswith("3.")
    request = {"op": "exec", "id": "1", "code": "x = 6 * 7\nprint(x)", "filename": "a.py", "first_line": 1}
    await channel.send((json.dumps(request) + "\n").encode())
    events = [json.loads(await channel.readline()) for _ in range(2)]
    assert events[0]["type"] == "out" and events[0]["data"] == "42\n"
    assert events[1]["type"] == "done" and events[1]["ok"] is True
    await channel.send(b'{"op": "shutdown"}\n')
    await read_all(channel)
    assert await channel.wait() == 0


async def test_sync_through_the_agent_receiver_then_remote_manifest(make_target, project, docker_client):
    from devloop.core.sync.ignore import IgnoreRules
    from devloop.core.sync.manifest import Scanner
    from devloop.core.sync.plan import plan_sync
    from devloop.core.sync.transport import fetch_remote_manifest, sync_via_agent

    (project / "pkg").mkdir()
    (project / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (project / "train.py").write_text("print('hi')\n")
    target = make_target()
    await target.start()
    manifest = Scanner(project, IgnoreRules.load(project)).scan()
    stats = await sync_via_agent(target, plan_sync(None, manifest), str(project))
    assert stats.files == 2
    (c,) = labelled(docker_client, project.name)
    assert c.exec_run(["cat", "/workspace/pkg/mod.py"]).output == b"VALUE = 1\n"
    remote = await fetch_remote_manifest(target)
    assert remote is not None and set(remote) == {"pkg/mod.py", "train.py"}
    assert plan_sync(remote, manifest).empty


async def test_stop_removes_the_container_and_is_idempotent(make_target, docker_client, project):
    target = make_target()
    await target.start()
    await target.stop()
    await target.stop()
    assert labelled(docker_client, project.name) == []
    assert await target.alive() is False


async def test_removed_from_outside_alive_false_channel_lost_and_start_recreates(make_target, docker_client, project):
    target = make_target()
    info = await target.start()
    channel = await target.spawn(["sh", "-c", "echo started; sleep 1000"])
    assert await channel.readline() == b"started\n"
    (c,) = labelled(docker_client, project.name)
    c.remove(force=True)
    with pytest.raises(ConnectionLost):
        await channel.readline()
    assert await target.alive() is False
    info2 = await target.start()
    assert info2.id != info.id and await target.alive()
    again = await target.spawn(target.agent_argv("kernel"))
    assert json.loads(await again.readline())["type"] == "ready"
    await again.kill()


async def test_snapshot_commits_and_records_what_promote_reads(make_target, docker_client, project):
    from devloop.core.promote.provenance import latest_snapshot

    target = make_target()
    await target.start()
    (c,) = labelled(docker_client, project.name)
    c.exec_run(["sh", "-c", "echo installed > /opt-marker"])
    snap = await target.snapshot(run_id="run-123")
    record = json.loads((project / ".devloop" / "snapshots.jsonl").read_text().splitlines()[-1])
    assert set(record) == {"image", "image_id", "repo_digest", "git_commit", "dirty", "time", "run_id", "profile"}
    assert record["image"] == snap.image and record["image_id"] == snap.image_id
    assert record["run_id"] == "run-123" and record["profile"] == "docker-test"
    assert record["git_commit"] == "" and record["dirty"] is False  # not a git repository
    assert latest_snapshot(project, "docker-test") == record
    image = docker_client.images.get(snap.image)
    # devloop's `sleep infinity` is not kept: the test image has no entrypoint and no cmd
    assert image.attrs["Config"]["Entrypoint"] in (None, [], [""]) and not image.attrs["Config"]["Cmd"]
    assert not image.labels.get(LABEL_PROJECT)  # a container from it is not taken for the dev container
    out = docker_client.containers.run(snap.image, ["cat", "/opt-marker"], remove=True, network_mode="none")
    assert out == b"installed\n"
    docker_client.images.remove(snap.image, force=True)


async def test_snapshot_on_stop_when_the_profile_asks(make_target, docker_client, project):
    target = make_target(snapshot_on_stop=True)
    await target.start()
    await target.stop()
    (record,) = [json.loads(line) for line in (project / ".devloop" / "snapshots.jsonl").read_text().splitlines()]
    assert labelled(docker_client, project.name) == []
    docker_client.images.remove(record["image"], force=True)


async def test_snapshot_while_execs_start_never_leaves_the_container_paused(make_target, docker_client, project):
    """A paused commit racing an exec froze runc inside the container for good (cgroup v1)."""
    import asyncio

    target = make_target()
    await target.start()

    async def echo():
        channel = await target.spawn(["echo", "hi"])
        assert await read_all(channel) == [b"hi\n"]
        return await channel.wait()

    results = await asyncio.gather(target.snapshot(run_id="race"), *[echo() for _ in range(4)])
    assert results[1:] == [0, 0, 0, 0]
    (c,) = labelled(docker_client, project.name)
    assert c.status == "running" and not c.attrs["State"]["Paused"]
    docker_client.images.remove(results[0].image, force=True)
