"""The dev pod a kubernetes profile asks for, and what its status says went wrong.

`pod_manifest` turns a profile into a core/v1 Pod (only fields stable since Kubernetes 1.20),
as a plain dict: what is sent is what a user would write. `diagnose` reads a pod's real status
(conditions, container states, the scheduler's message, events) into one clear `TargetError`
with a fix, or None while the pod is still on its way.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from devloop.core.targets.base import TargetError

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Profile

CONTAINER = "main"
DEFAULT_WORKDIR = "/workspace"
LABEL_PROJECT = "devloop.project"
LABEL_PROFILE = "devloop.profile"
LABEL_ROOT = "devloop.root-hash"
ANNOTATION_SPEC = "devloop.dev/spec-hash"
ANNOTATION_KEEP = "devloop.dev/keep"
GPU_RESOURCE = "nvidia.com/gpu"
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                 "RegistryUnavailable")


def dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label (lowercase alphanumerics and '-') made from any text."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return label or "x"


def label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "x"


def short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def gpu_count(profile: "Profile") -> int:
    """The number of GPUs for `resources.limits["nvidia.com/gpu"]` (Kubernetes counts, never names)."""
    gpus = profile.gpus
    if gpus in (None, 0, "", ()):
        return 0
    if isinstance(gpus, int):
        return gpus
    if isinstance(gpus, str) and gpus.isdigit():
        return int(gpus)
    raise TargetError(
        f"profile {profile.name!r}: gpus: {gpus!r} cannot be asked of Kubernetes, which schedules GPUs by count",
        hint="write gpus: N (a number); pick GPU models with node_selector instead")


def _env(profile: "Profile") -> tuple[list[dict], list[dict]]:
    env = [{"name": str(k), "value": str(v)} for k, v in (profile.env or {}).items()]
    env_from: list[dict] = []
    for item in profile.env_from_secrets or ():
        if isinstance(item, str):
            env_from.append({"secretRef": {"name": item}})
        else:
            env.append({"name": str(item["name"]),
                        "valueFrom": {"secretKeyRef": {"name": str(item["secret"]), "key": str(item["key"])}}})
    return env, env_from


def _volumes(profile: "Profile") -> tuple[list[dict], list[dict]]:
    volumes: list[dict] = []
    mounts: list[dict] = []
    for i, vol in enumerate(profile.volumes or ()):
        if not isinstance(vol, Mapping) or "claim" not in vol or "mount_path" not in vol:
            raise TargetError(
                f"profile {profile.name!r}: volumes[{i}] = {vol!r} is not a PersistentVolumeClaim mount",
                hint="write volumes: [{claim: NAME, mount_path: /data, read_only: true}]")
        name = f"data-{i}"
        read_only = bool(vol.get("read_only", False))
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": str(vol["claim"]),
                                                                "readOnly": read_only}})
        mounts.append({"name": name, "mountPath": str(vol["mount_path"]), "readOnly": read_only})
    return volumes, mounts


KEEPER = "trap 'exit 0' TERM; sleep infinity & wait"


def pod_manifest(profile: "Profile", *, name: str, project: str, root_hash: str, workdir: str) -> dict:
    """The Pod for this profile: labelled for project+profile, sleeping until devloop execs in."""
    if not profile.image:
        raise TargetError(f"profile {profile.name!r} (kind kubernetes) has no `image:`",
                          hint="add image: REGISTRY/IMAGE:TAG (an image the cluster's nodes can pull)")
    resources: dict[str, dict[str, str]] = {}
    gpus = gpu_count(profile)
    if gpus:
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(gpus)
    for key in ("cpu", "memory"):
        value = getattr(profile, key)
        if value not in (None, ""):
            resources.setdefault("requests", {})[key] = str(value)
            resources.setdefault("limits", {})[key] = str(value)
    env, env_from = _env(profile)
    volumes, mounts = _volumes(profile)
    if profile.shm_size:  # PyTorch DataLoader workers need more than the runtime's 64 MB /dev/shm
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(profile.shm_size)}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": profile.image,
        "imagePullPolicy": "IfNotPresent",
        # PID 1 that ends on SIGTERM from inside the pod (a session's idle stop): `sleep` alone,
        # as PID 1 without a handler, would ignore it and hold the GPU
        "command": ["sh", "-c", KEEPER],
        "workingDir": workdir,
    }
    if resources:
        container["resources"] = resources
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [container],
    }
    if profile.network == "host":  # clusters (or test nodes) without a pod network
        spec["hostNetwork"] = True
    if profile.node_selector:
        spec["nodeSelector"] = {str(k): str(v) for k, v in profile.node_selector.items()}
    if profile.tolerations:
        spec["tolerations"] = [dict(t) for t in profile.tolerations]
    if profile.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in profile.image_pull_secrets]
    if profile.service_account:
        spec["serviceAccountName"] = profile.service_account
    if volumes:
        spec["volumes"] = volumes
    labels = {LABEL_PROJECT: label_value(project), LABEL_PROFILE: label_value(profile.name),
              LABEL_ROOT: root_hash, "app.kubernetes.io/managed-by": "devloop"}
    spec_hash = short_hash(json.dumps(spec, sort_keys=True))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {ANNOTATION_SPEC: spec_hash, ANNOTATION_KEEP: str(bool(profile.keep)).lower()}},
        "spec": spec,
    }


def _get(obj: Any, *path: str) -> Any:
    """Read a field from a kubernetes client model or a dict (camelCase or snake_case keys)."""
    for key in path:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)
            obj = obj.get(key, obj.get(snake))
        else:
            snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)
            obj = getattr(obj, snake, None)
    return obj


def describe_limits(profile: "Profile") -> str:
    parts = [f"{k} {getattr(profile, k)}" for k in ("cpu", "memory") if getattr(profile, k)]
    gpus = profile.gpus if isinstance(profile.gpus, int) else None
    if gpus:
        parts.append(f"{gpus} nvidia.com/gpu")
    return ", ".join(parts) or "no limits"


def diagnose(pod: Any, events: Iterable[Any], profile: "Profile") -> TargetError | None:
    """Why this pod cannot run (a TargetError with a fix), or None while it is still on its way."""
    name = _get(pod, "metadata", "name")
    where = f"pod {name} (profile {profile.name!r})"
    phase = _get(pod, "status", "phase")
    reason = _get(pod, "status", "reason") or ""
    message = (_get(pod, "status", "message") or "").strip()
    if reason == "Evicted":
        return TargetError(f"{where} was evicted by the node: {message or 'no message'}",
                           hint="the node ran short of memory or disk, or the pod used more ephemeral "
                                "storage than allowed; free space / lower usage, or pick another node "
                                "(node_selector); devloop starts a new pod on the next run")
    for cond in _get(pod, "status", "conditions") or []:
        if _get(cond, "type") == "PodScheduled" and _get(cond, "status") == "False" \
                and _get(cond, "reason") == "Unschedulable":
            why = (_get(cond, "message") or "").strip()
            hint = "ask for less (cpu/memory/gpus in the profile), or pick nodes that have it (node_selector, tolerations)"
            if GPU_RESOURCE in why:
                hint = (f"no node offers {gpu_count(profile)} free {GPU_RESOURCE}: check `devloop doctor` for the "
                        "nodes' GPU capacity, lower gpus:, or point context:/node_selector: at a GPU node pool")
            return TargetError(f"{where} cannot be scheduled ({describe_limits(profile)}): {why}", hint=hint)
    for cs in _get(pod, "status", "containerStatuses") or []:
        waiting = _get(cs, "state", "waiting")
        terminated = _get(cs, "state", "terminated")
        if waiting is not None:
            w_reason = _get(waiting, "reason") or ""
            w_message = (_get(waiting, "message") or "").strip()
            if w_reason in _PULL_REASONS:
                return TargetError(
                    f"{where}: the node cannot pull image {profile.image!r} ({w_reason}): "
                    f"{w_message or 'no message'}",
                    hint="check the image name and tag, push it to a registry the cluster can reach, "
                         "and give credentials with image_pull_secrets: [SECRET]")
            if w_reason in ("CreateContainerConfigError", "CreateContainerError", "RunContainerError"):
                return TargetError(f"{where}: the container cannot be created ({w_reason}): {w_message}",
                                   hint="check the secrets, config maps and volumes the profile names "
                                        "(env_from_secrets, volumes, image_pull_secrets)")
        if terminated is not None:
            t_reason = _get(terminated, "reason") or ""
            code = _get(terminated, "exitCode")
            if t_reason == "OOMKilled":
                return TargetError(
                    f"{where}: the container was OOMKilled (exit {code}): its memory limit is "
                    f"{profile.memory or 'the namespace default'}",
                    hint="raise `memory:` in the profile or use less memory; devloop starts a new pod on the next run")
            return TargetError(
                f"{where}: the container stopped ({t_reason or 'exited'}, exit {code}): "
                f"{(_get(terminated, 'message') or '').strip() or 'no message'}",
                hint=f"the image must have `sh` and `sleep` (devloop keeps the pod alive with `{KEEPER}`); "
                     f"check with: kubectl logs {name}")
    if phase in ("Failed", "Succeeded"):
        return TargetError(f"{where} ended ({phase}{': ' + reason if reason else ''}): {message or 'no message'}",
                           hint="devloop starts a new pod on the next run")
    for event in events:
        if _get(event, "type") == "Warning" and _get(event, "reason") in ("FailedMount", "FailedAttachVolume"):
            return TargetError(f"{where}: {_get(event, 'reason')}: {(_get(event, 'message') or '').strip()}",
                               hint="check the PersistentVolumeClaims named in volumes: exist in the namespace")
    return None


def progress_line(pod: Any) -> str:
    """One line for the user while the pod is on its way (Pending, pulling, creating)."""
    phase = _get(pod, "status", "phase") or "Pending"
    for cs in _get(pod, "status", "containerStatuses") or []:
        waiting = _get(cs, "state", "waiting")
        if waiting is not None and _get(waiting, "reason"):
            return f"pod {phase}: {_get(waiting, 'reason')}"
    for cond in _get(pod, "status", "conditions") or []:
        if _get(cond, "status") == "False" and _get(cond, "reason"):
            return f"pod {phase}: {_get(cond, 'reason')}"
    return f"pod {phase}"
