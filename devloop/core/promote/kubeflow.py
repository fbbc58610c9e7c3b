"""Multi-node stages (`nodes > 1`) as Kubeflow resources: a PyTorchJob (kubeflow.org/v1, the
Training Operator) or a TrainJob (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer v2).

Every node runs the pinned image with `torchrun`, one process per GPU of the node:

- PyTorchJob: a Master and `nodes - 1` Workers (container `pytorch`, as the operator expects).
  The operator gives every pod MASTER_ADDR, MASTER_PORT and RANK (the node's rank), so torchrun
  uses static rendezvous with `--nnodes`, `--nproc-per-node`, `--node-rank "$RANK"`,
  `--master-addr`, `--master-port`: the launch every operator version supports. `nprocPerNode`
  is set too, so WORLD_SIZE counts processes.
- TrainJob: names a runtime (`[promote.trainjob] runtime`, default `torch-distributed`); that
  runtime's torch plugin sets the PET_* variables torchrun reads, so the command is plain
  `torchrun FILE`. Volumes and mounts go in `podSpecOverrides` for the runtime's `node` job.

The code: with a git remote, an emptyDir at the workdir and a shallow `git fetch` of the pinned
commit before torchrun starts (the image needs git); without one, the snapshot image's workdir.
`/dev/shm` is a Memory emptyDir of the profile's `shm_size` (DataLoader workers share memory
through it; a container's default is 64 MB). Provenance goes on labels and annotations.
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

from devloop.core.promote.argo import (env_and_resources, env_of, provenance_annotations, provenance_labels,
                                       resources_of)
from devloop.core.promote.model import Pipeline, PromoteError, Step

PYTORCHJOB_API = "kubeflow.org/v1"
TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
SHM_VOLUME = "dshm"
CODE_VOLUME = "code"
TRAINJOB_NODE = "node"  # the replicated job and container of Trainer's torch runtimes


def shm_volume(p: Pipeline) -> dict[str, Any]:
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": p.shm_size}}


def shm_mount() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "mountPath": "/dev/shm"}


def _fetch_lines(p: Pipeline) -> list[str]:
    if not p.code.repo_url:
        return []
    return ["git init -q .",
            f"git fetch -q --depth 1 {shlex.quote(p.code.repo_url)} {p.code.commit}",
            "git checkout -q FETCH_HEAD"]


def _entry(step: Step) -> list[str]:
    target = ["-m", step.module] if step.module else [step.file or step.command[1]]
    return target + list(step.args)


def nproc(step: Step) -> int:
    return int(step.resources.gpus or 1)


def torchrun_script(p: Pipeline, step: Step, *, static: bool) -> str:
    """The `sh -c` script a node runs: fetch the pinned code, then exec torchrun."""
    if static:
        launch = (f"exec torchrun --nnodes={step.nodes} --nproc-per-node={nproc(step)} "
                  f'--node-rank="$RANK" --master-addr="$MASTER_ADDR" --master-port="$MASTER_PORT" '
                  + shlex.join(_entry(step)))
    else:
        launch = "exec torchrun " + shlex.join(_entry(step))
    return "\n".join(["set -e", f"cd {shlex.quote(p.workdir)}", *_fetch_lines(p), launch]) + "\n"


def _volumes(p: Pipeline) -> tuple[list[dict], list[dict]]:
    volumes, mounts = [], []
    if p.shm_size:
        volumes.append(shm_volume(p))
        mounts.append(shm_mount())
    if p.code.repo_url:
        volumes.append({"name": CODE_VOLUME, "emptyDir": {}})
        mounts.append({"name": CODE_VOLUME, "mountPath": p.workdir})
    return volumes, mounts


def _meta(p: Pipeline, step: Step) -> dict[str, Any]:
    labels = provenance_labels(p)
    labels["devloop.dev/stage"] = step.name
    return {"generateName": f"{p.name}-{step.name}-"[:58], "labels": labels,
            "annotations": provenance_annotations(p)}


def pytorchjob(p: Pipeline, step: Step) -> dict[str, Any]:
    """The PyTorchJob for one multi-node stage."""
    volumes, mounts = _volumes(p)
    container: dict[str, Any] = {
        "name": "pytorch", "image": p.image,
        "command": ["sh", "-c", torchrun_script(p, step, static=True)],
        "workingDir": p.workdir,
    }
    container.update(env_and_resources(step))
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"containers": [container]}
    if volumes:
        pod["volumes"] = volumes
    if p.service_account:
        pod["serviceAccountName"] = p.service_account
    if p.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in p.image_pull_secrets]
    if p.node_selector:
        pod["nodeSelector"] = dict(p.node_selector)
    if p.tolerations:
        pod["tolerations"] = [dict(t) for t in p.tolerations]
    meta = _meta(p, step)
    template = {"metadata": {"labels": dict(meta["labels"])}, "spec": pod}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never",
                           "template": copy.deepcopy(template)}}
    if step.nodes > 1:
        replicas["Worker"] = {"replicas": step.nodes - 1, "restartPolicy": "Never",
                              "template": copy.deepcopy(template)}
    return {
        "apiVersion": PYTORCHJOB_API,
        "kind": "PyTorchJob",
        "metadata": meta,
        "spec": {
            "nprocPerNode": str(nproc(step)),
            "runPolicy": {"backoffLimit": 0},
            "pytorchReplicaSpecs": replicas,
        },
    }


def trainjob(p: Pipeline, step: Step) -> dict[str, Any]:
    """The TrainJob for one multi-node stage."""
    if p.image_pull_secrets:
        raise PromoteError(
            "image_pull_secrets cannot be set on a TrainJob (trainer.kubeflow.org/v1alpha1 has "
            "no field for them)", file=p.profile_file, field="image_pull_secrets",
            hint="attach the pull secret to the service account the runtime uses "
                 "(kubectl patch serviceaccount ... imagePullSecrets), or use --target pytorchjob")
    volumes, mounts = _volumes(p)
    trainer: dict[str, Any] = {
        "image": p.image,
        "command": ["sh", "-c", torchrun_script(p, step, static=False)],
    }
    env = env_of(step)
    if env:
        trainer["env"] = env
    trainer["numNodes"] = step.nodes
    trainer["numProcPerNode"] = nproc(step)
    res = resources_of(step)
    if res:
        trainer["resourcesPerNode"] = res
    meta = _meta(p, step)
    spec: dict[str, Any] = {"runtimeRef": {"name": p.trainjob_runtime}, "trainer": trainer,
                            "labels": dict(meta["labels"])}
    override: dict[str, Any] = {"targetJobs": [{"name": TRAINJOB_NODE}]}
    container: dict[str, Any] = {"name": TRAINJOB_NODE}
    if mounts:
        container["volumeMounts"] = mounts
    if step.secret_env_from:
        container["envFrom"] = [{"secretRef": {"name": n}} for n in step.secret_env_from]
    if len(container) > 1:
        override["containers"] = [container]
    if volumes:
        override["volumes"] = volumes
    if p.service_account:
        override["serviceAccountName"] = p.service_account
    if p.node_selector:
        override["nodeSelector"] = dict(p.node_selector)
    if p.tolerations:
        override["tolerations"] = [dict(t) for t in p.tolerations]
    if len(override) > 1:
        spec["podSpecOverrides"] = [override]
    return {"apiVersion": TRAINJOB_API, "kind": "TrainJob", "metadata": meta, "spec": spec}


def multi_node_steps(p: Pipeline, target: str) -> list[Step]:
    steps = [s for s in p.steps if s.nodes > 1]
    if not steps:
        raise PromoteError(
            f"--target {target} writes multi-node stages, and no [[stage]] has nodes > 1",
            file=p.config_file, field="nodes", hint="set nodes = 2 (and gpus per node) on the training [[stage]], "
                                "or promote with --target argo")
    return steps


def to_document(p: Pipeline, target: str) -> dict[str, Any]:
    """One resource per multi-node stage: the resource itself, or a `v1 List` of them."""
    make = pytorchjob if target == "pytorchjob" else trainjob
    items = [make(p, s) for s in multi_node_steps(p, target)]
    if len(items) == 1:
        return items[0]
    return {"apiVersion": "v1", "kind": "List", "items": items}


HEADER = ("Generated by `devloop promote` -- edit devloop.toml / the profile and promote again.\n"
          "`devloop promote --check` fails when this file no longer matches them.\n"
          "Create: kubectl create -f {path}")
