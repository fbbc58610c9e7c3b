"""Pod statuses the test cluster cannot produce on demand (an eviction, an OOMKilled main
container, a missing secret) read into clear errors: `kube_pod.diagnose` on status documents
shaped as the API returns them. No cluster needed. The pod spec a profile gives is checked too."""

from __future__ import annotations

from devloop.core.config import Profile
from devloop.core.targets.kube_pod import diagnose, pod_manifest

PROFILE = Profile(name="gpu", kind="kubernetes", image="reg/img:1", memory="4Gi", cpu="2", gpus=1)


def pod(status: dict) -> dict:
    return {"metadata": {"name": "devloop-x-gpu-abc123"}, "status": status}


def test_evicted_pod() -> None:
    err = diagnose(pod({"phase": "Failed", "reason": "Evicted",
                        "message": "The node was low on resource: memory. Container main was using 5Gi."}),
                   (), PROFILE)
    assert err is not None
    assert "evicted" in str(err) and "low on resource: memory" in str(err) and "fix:" in str(err)


def test_oomkilled_main_container_names_the_limit() -> None:
    err = diagnose(pod({"phase": "Failed", "containerStatuses": [
        {"name": "main", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}), (), PROFILE)
    assert err is not None and "OOMKilled" in str(err) and "4Gi" in str(err)


def test_missing_secret_is_a_config_error() -> None:
    err = diagnose(pod({"phase": "Pending", "containerStatuses": [
        {"name": "main", "state": {"waiting": {"reason": "CreateContainerConfigError",
                                               "message": 'secret "wandb" not found'}}}]}), (), PROFILE)
    assert err is not None and 'secret "wandb" not found' in str(err) and "env_from_secrets" in str(err)


def test_pending_without_problem_is_not_an_error() -> None:
    assert diagnose(pod({"phase": "Pending", "containerStatuses": [
        {"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}}]}), (), PROFILE) is None


def test_manifest_carries_the_profile() -> None:
    profile = Profile(name="gpu", kind="kubernetes", image="reg/img:1", memory="4Gi", cpu="2", gpus=2,
                      node_selector={"pool": "a100"}, tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},),
                      image_pull_secrets=("regcred",), env={"A": "1"},
                      env_from_secrets=("all-of-it", {"name": "KEY", "secret": "s", "key": "k"}),
                      volumes=({"claim": "data", "mount_path": "/data", "read_only": True},),
                      service_account="runner", shm_size="8Gi")
    m = pod_manifest(profile, name="p", project="proj", root_hash="r", workdir="/workspace")
    c = m["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"nvidia.com/gpu": "2", "cpu": "2", "memory": "4Gi"},
                              "requests": {"cpu": "2", "memory": "4Gi"}}
    assert m["spec"]["nodeSelector"] == {"pool": "a100"} and m["spec"]["serviceAccountName"] == "runner"
    assert m["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"secretRef": {"name": "all-of-it"}} in c["envFrom"]
    assert {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}} in c["env"]
    assert {"name": "data-0", "mountPath": "/data", "readOnly": True} in c["volumeMounts"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert m["metadata"]["labels"]["devloop.project"] == "proj"
    assert "hostNetwork" not in m["spec"]
