"""Each failure a Docker user meets has one clear message with a fix (real engine, real errors)."""

from __future__ import annotations

import json

import pytest

from devloop.core.targets.base import TargetError
from devloop.core.targets.docker import LABEL_PROJECT

pytestmark = pytest.mark.docker


def labelled(client, project_name):
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project_name}"})


async def test_engine_not_reachable_names_docker_host_and_how_to_start_one(make_target, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    target = make_target(docker_host=None)
    with pytest.raises(TargetError) as err:
        await target.start()
    text = str(err.value)
    assert f"unix://{tmp_path}/no-engine.sock" in text and "(from DOCKER_HOST)" in text
    assert "start the Docker engine" in err.value.hint and "DOCKER_HOST" in err.value.hint
    assert "tests/" not in text  # a hint names what the user can run, not devloop's own files


async def test_missing_image_is_never_pulled_and_says_how_to_get_it(make_target, docker_client, project):
    target = make_target(image="registry.invalid/team/trainer:1.0")
    with pytest.raises(TargetError) as err:
        await target.start()
    text = str(err.value)
    assert "registry.invalid/team/trainer:1.0" in text and "never pulls" in text
    assert "docker pull registry.invalid/team/trainer:1.0" in text and "build:" in text
    assert labelled(docker_client, project.name) == []


async def test_gpus_on_an_engine_without_gpu_runtime_fails_fast_and_leaves_nothing(make_target, docker_client, project):
    target = make_target(gpus="all")
    with pytest.raises(TargetError) as err:
        await target.start()
    text = str(err.value)
    assert "asks for gpus: all" in text and "has no GPU runtime" in text
    assert "NVIDIA Container Toolkit" in text and "remove `gpus:`" in text
    assert labelled(docker_client, project.name) == []


@pytest.mark.parametrize("gpus", [2, ("0", "1")])
async def test_gpu_counts_and_device_ids_fail_the_same_way(make_target, gpus):
    with pytest.raises(TargetError, match="has no GPU runtime"):
        await make_target(gpus=gpus).start()


async def test_oom_kill_is_exit_137_with_the_memory_limit_named(make_target):
    target = make_target(memory="48Mi")
    await target.start()
    channel = await target.spawn(target.agent_argv("kernel"))
    assert b'"ready"' in await channel.readline()
    cell = "blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 2**20))\n    blocks[-1][::4096] = b'x' * (len(blocks[-1]) // 4096)\n"
    request = {"op": "exec", "id": "1", "code": cell, "filename": "a.py", "first_line": 1}
    await channel.send((json.dumps(request) + "\n").encode())
    while await channel.readline():
        pass
    code = await channel.wait()
    assert code == 137
    why = await target.explain_exit(code)
    assert why is not None and "out-of-memory" in why and "48Mi" in why and "`memory:`" in why
    assert await target.explain_exit(code) is None  # that kill was explained already
    assert await target.alive()  # the container survives its kernel


async def test_a_plain_kill_is_not_called_oom(make_target):
    target = make_target(memory="256Mi")
    await target.start()
    channel = await target.spawn(["sh", "-c", "echo up; sleep 1000"])
    await channel.readline()
    await channel.kill()
    assert await target.explain_exit(await channel.wait()) is None


async def test_build_failure_shows_the_builders_last_lines(make_target, project):
    (project / "Dockerfile").write_text("FROM devloop-test:hostpy\nRUN false-command-that-fails\n")
    target = make_target(image=None, build={"context": ".", "dockerfile": "Dockerfile"})
    with pytest.raises(TargetError) as err:
        await target.start()
    assert "building" in str(err.value) and "Dockerfile" in str(err.value)


async def test_build_profile_builds_offline_and_runs(make_target, docker_client, project):
    (project / "Dockerfile").write_text("FROM devloop-test:hostpy\nENV BUILT=yes\nWORKDIR /srv/app\n")
    target = make_target(image=None, build={"context": ".", "dockerfile": "Dockerfile"})
    info = await target.start()
    assert info.workdir == "/srv/app"  # the image's WORKDIR when the profile sets none
    channel = await target.spawn(["sh", "-c", "echo $BUILT"])
    assert await channel.readline() == b"yes\n"
    await target.stop()
    docker_client.images.remove(f"devloop/{project.name}-docker-test:dev", force=True)
