"""The kubernetes target against the real test cluster: pod lifecycle, exec channels (stdin EOF,
exit codes, session kill), the agent bundle, logs, doctor, and the clear errors a user gets from
the pod's real status (unschedulable GPU request, image pull failure, OOM kill, RBAC)."""

from __future__ import annotations

import asyncio

import pytest

from devloop.core.agent_bundle import bundle_name
from devloop.core.targets.base import TargetError

from tests.integration.kube.conftest import NOACCESS_CONTEXT, pods_of

pytestmark = pytest.mark.kube


async def run(target, argv, stdin: bytes = b"") -> tuple[int, bytes, str]:
    ch = await target.spawn(argv)
    if stdin:
        await ch.send(stdin)
    await ch.close_stdin()
    out = b""
    while line := await ch.readline():
        out += line
    return await ch.wait(), out, ch.stderr_tail()


async def test_pod_lifecycle_exec_and_cleanup(make_target, core_api) -> None:
    target = make_target(env={"FROM_PROFILE": "yes"}, cpu="500m", memory="256Mi")
    try:
        info = await target.start()
        pod = core_api.read_namespaced_pod(info.id, "default")
        assert pod.metadata.labels["devloop.profile"] == "kube"
        assert pod.metadata.labels["devloop.project"] == target.project
        limits = pod.spec.containers[0].resources.limits
        assert limits == {"cpu": "500m", "memory": "256Mi"}
        assert info.workdir == "/workspace" and info.python.endswith("python3")
        assert info.image_digest.startswith("docker://sha256:")
        # stdin reaches the process and EOF ends it; stdout, stderr and the exit code come back
        code, out, err = await run(target, ["sh", "-c", 'cat; echo "env=$FROM_PROFILE" >&2; exit 3'], b"hello\n")
        assert (code, out) == (3, b"hello\n")
        assert err.strip() == "env=yes"
        # the agent bundle is there, under its content hash
        code, out, _ = await run(target, ["ls", "/tmp/devloop"])
        assert bundle_name() in out.decode()
        # a second start() is a no-op on the running pod
        assert (await target.start()).id == info.id
    finally:
        await target.stop()
    assert pods_of(core_api, target.project) == []


async def test_kill_stops_the_process_and_what_it_started(make_target) -> None:
    target = make_target()
    try:
        await target.start()
        ch = await target.spawn(["sh", "-c", "sleep 300 & echo started; wait"])
        assert await ch.readline() == b"started\n"
        await ch.kill()
        assert await ch.wait() == -9
        code, out, _ = await run(target, ["ps", "-eo", "args"])
        assert b"sleep 300" not in out, out.decode()
    finally:
        await target.stop()


async def test_gpu_request_on_a_gpu_less_node_fails_with_the_schedulers_reason(make_target, core_api) -> None:
    target = make_target(gpus=1)
    with pytest.raises(TargetError) as err:
        await asyncio.wait_for(target.start(), 60)  # a hang would be the bug: this fails in ~1 s
    text = str(err.value)
    assert "Insufficient nvidia.com/gpu" in text
    assert "0/1 nodes are available" in text
    assert "fix:" in text and "devloop doctor" in text
    assert pods_of(core_api, target.project) == []  # the unschedulable pod is not left behind


async def test_missing_image_is_an_image_pull_error(make_target, core_api) -> None:
    target = make_target(image="devloop-test:no-such-tag")
    with pytest.raises(TargetError) as err:
        await asyncio.wait_for(target.start(), 120)
    text = str(err.value)
    assert "devloop-test:no-such-tag" in text
    assert "ErrImagePull" in text or "ImagePullBackOff" in text
    assert "image_pull_secrets" in text
    assert pods_of(core_api, target.project) == []


async def test_forbidden_by_rbac_names_namespace_and_fix(make_target) -> None:
    target = make_target(context=NOACCESS_CONTEXT)
    with pytest.raises(TargetError) as err:
        await target.start()
    text = str(err.value)
    assert "forbidden" in text and "namespace default" in text
    assert "kubectl auth can-i" in text
    checks = await make_target(context=NOACCESS_CONTEXT).doctor_checks()
    by_name = {name: (ok, detail) for name, ok, detail in checks}
    assert by_name["Kubernetes API reachable"][0] is True
    ok, detail = by_name["namespace default allowed"]
    assert ok is False and "create pods" in detail and "create pods/exec" in detail


async def test_doctor_reports_api_namespace_and_gpu_capacity(make_target) -> None:
    checks = {name: (ok, detail) for name, ok, detail in await make_target().doctor_checks()}
    assert checks["Kubernetes API reachable"][0] and "v1.20" in checks["Kubernetes API reachable"][1]
    assert checks["namespace default allowed"][0]
    assert checks["GPU capacity of nodes"] == (True, checks["GPU capacity of nodes"][1])
    gpu = {name: (ok, detail) for name, ok, detail in await make_target(gpus=2).doctor_checks()}
    ok, detail = gpu["GPU capacity of nodes"]
    assert ok is False and "localhost: 0" in detail and "asks for 2" in detail


async def test_oom_kill_is_explained_with_the_memory_limit(make_target) -> None:
    target = make_target(memory="64Mi")
    try:
        await target.start()
        code, _, _ = await run(target, ["python3", "-c", "x = bytearray(400 * 1024 * 1024); print(len(x))"])
        assert code in (-9, 137)
        why = await target.explain_exit(code)
        assert why is not None and "OOMKilled" in why and "64Mi" in why
        assert await target.alive()  # the pod lives on; only the process was killed
    finally:
        await target.stop()


async def test_main_container_logs_stream(make_target) -> None:
    target = make_target()
    got: list[str] = []
    try:
        await target.start()
        follower = asyncio.create_task(target.follow_logs(got.append))
        await asyncio.sleep(0.5)
        # anything written to PID 1's stdout is the main container's log
        await run(target, ["sh", "-c", "echo 'from the main container' > /proc/1/fd/1"])
        for _ in range(100):
            if "from the main container" in "".join(got):
                break
            await asyncio.sleep(0.1)
        assert "from the main container\n" in "".join(got)
    finally:
        await target.stop()
    await asyncio.wait_for(follower, 10)  # stop() ends the follower


async def test_keep_reuses_the_pod_and_a_changed_profile_replaces_it(make_target, core_api) -> None:
    first = make_target(keep=True)
    info = await first.start()
    await first.stop()
    assert [p.metadata.name for p in pods_of(core_api, first.project)] == [info.id]  # kept
    second = make_target(keep=True)
    again = await second.start()
    assert again.details["uid"] == info.details["uid"]
    await second.stop()
    third = make_target(keep=True, env={"CHANGED": "1"})
    changed = await third.start()
    assert changed.details["uid"] != info.details["uid"]
    third._delete(third.pod_name, wait=True)
    await third.stop()
    assert pods_of(core_api, first.project) == []


async def test_deleted_pod_is_not_alive_and_start_recreates_it(make_target, core_api) -> None:
    target = make_target()
    try:
        info = await target.start()
        core_api.delete_namespaced_pod(info.id, "default", grace_period_seconds=0)
        assert await target.alive() is False
        again = await target.start()
        assert again.id != info.id
        assert "deleted" in target.lost_reason
        code, out, _ = await run(target, ["echo", "back"])
        assert (code, out) == (0, b"back\n")
    finally:
        await target.stop()
