"""Pipeline -> Argo Workflow (a plain dict, keys in a stable order).

One container (or script) template per stage and one DAG template (`main`) wiring them by
`needs`. The code comes in as a git input artifact at the pinned commit, mounted at the workdir
(or, with no git remote, is the snapshot image's own workdir). A stage's `outputs` are output
artifacts; a stage that needs another receives that stage's outputs at the same paths.
Provenance goes into labels (short, label-safe values) and annotations (everything).
The profile's `shm_size` becomes a `/dev/shm` emptyDir (medium Memory, sized) in every step.
A multi-node stage (`nodes > 1`) is a `resource` step that creates its PyTorchJob
(kubeflow.py) and waits for the Master to succeed or fail, so it sits inside the DAG.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from devloop.core.promote.model import Pipeline, PromoteError, Step, artifact_name

API_VERSION = "argoproj.io/v1alpha1"
SHM_VOLUME = "dshm"
PREFIX = "devloop.dev/"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(value: str) -> str | None:
    """`value` when Kubernetes accepts it as a label value, else None (it stays an annotation)."""
    return value if len(value) <= 63 and _LABEL_VALUE.match(value) else None


def provenance_labels(p: Pipeline) -> dict[str, str]:
    pv = p.provenance
    labels = {"app.kubernetes.io/managed-by": "devloop", PREFIX + "pipeline": p.name}
    for key, value in (("run-id", pv.run_id), ("git-commit", pv.git_commit),
                       ("dirty", "true" if pv.dirty else "false"), ("profile", pv.profile)):
        ok = label_value(value)
        if ok:
            labels[PREFIX + key] = ok
    return labels


def provenance_annotations(p: Pipeline) -> dict[str, str]:
    pv = p.provenance
    ann = {
        PREFIX + "run-id": pv.run_id,
        PREFIX + "git-commit": pv.git_commit,
        PREFIX + "dirty": "true" if pv.dirty else "false",
    }
    if pv.diff_sha256:
        ann[PREFIX + "diff-sha256"] = pv.diff_sha256
    ann[PREFIX + "image"] = p.image
    ann[PREFIX + "image-digest"] = pv.image_digest
    ann[PREFIX + "profile"] = pv.profile
    ann[PREFIX + "devloop-version"] = pv.devloop_version
    ann[PREFIX + "promoted-at"] = pv.time
    ann[PREFIX + "code"] = f"git {p.code.repo_url}" if p.code.repo_url else "image"
    return ann


def resources_of(step: Step) -> dict[str, Any]:
    r = step.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if r.cpu:
        requests["cpu"] = r.cpu
    if r.memory:
        requests["memory"] = r.memory
        limits["memory"] = r.memory
    if r.gpus:
        requests["nvidia.com/gpu"] = r.gpus
        limits["nvidia.com/gpu"] = r.gpus
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def env_of(step: Step) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in step.env]
    for ref in step.secret_env:
        env.append({"name": ref.env,
                    "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}})
    return env


def env_and_resources(step: Step) -> dict[str, Any]:
    """A container's env, envFrom and resources keys for a stage (only those it has), in the
    order Argo steps and Kubeflow replicas both write them."""
    out: dict[str, Any] = {}
    env = env_of(step)
    if env:
        out["env"] = env
    if step.secret_env_from:
        out["envFrom"] = [{"secretRef": {"name": n}} for n in step.secret_env_from]
    res = resources_of(step)
    if res:
        out["resources"] = res
    return out


def _abs(p: Pipeline, rel: str) -> str:
    return posixpath.normpath(posixpath.join(p.workdir, rel))


def _template(p: Pipeline, step: Step, producers: dict[str, Step]) -> dict[str, Any]:
    t: dict[str, Any] = {"name": step.name}
    if step.nodes > 1:
        return _resource_template(p, step, producers)
    inputs: list[dict[str, Any]] = []
    if p.code.repo_url:
        inputs.append({"name": "code", "path": p.workdir,
                       "git": {"repo": p.code.repo_url, "revision": p.code.commit}})
    for dep in step.needs:
        for out in producers[dep].outputs:
            inputs.append({"name": artifact_name(dep, out), "path": _abs(p, out)})
    if inputs:
        t["inputs"] = {"artifacts": inputs}
    if step.outputs:
        t["outputs"] = {"artifacts": [{"name": artifact_name(step.name, out), "path": _abs(p, out)}
                                      for out in step.outputs]}
    body: dict[str, Any] = {"image": p.image, "command": list(step.command)}
    if step.script:
        body["source"] = step.script
    body["workingDir"] = p.workdir
    body.update(env_and_resources(step))
    if p.shm_size:
        body["volumeMounts"] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    t["script" if step.script else "container"] = body
    return t


def _resource_template(p: Pipeline, step: Step, producers: dict[str, Step]) -> dict[str, Any]:
    from devloop.core.promote import kubeflow, yamltext

    if step.outputs:
        raise PromoteError(
            f"multi-node stage {step.stage!r} lists outputs, which Argo cannot collect from a "
            f"PyTorchJob", file=p.config_file, line=step.line, field="outputs",
            hint="remove outputs and have rank 0 write to a volume or object store")
    fed = [d for d in step.needs if producers[d].outputs]
    if fed:
        raise PromoteError(
            f"multi-node stage {step.stage!r} needs the outputs of "
            f"{', '.join(producers[d].stage for d in fed)}, and a PyTorchJob cannot receive "
            f"Argo artifacts", file=p.config_file, line=step.line, field="needs",
            hint="have those stages write to a volume or object store the job reads, and "
                 "remove their outputs")
    manifest = yamltext.dump(kubeflow.pytorchjob(p, step))
    return {"name": step.name, "resource": {
        "action": "create",
        "setOwnerReference": True,
        "successCondition": "status.replicaStatuses.Master.succeeded > 0",
        "failureCondition": "status.replicaStatuses.Master.failed > 0",
        "manifest": manifest,
    }}


def to_workflow(p: Pipeline) -> dict[str, Any]:
    """The Argo Workflow for `p`."""
    producers = {s.name: s for s in p.steps}
    dag_name = "main" if "main" not in producers else "main-dag"
    tasks = []
    for s in p.steps:
        task: dict[str, Any] = {"name": s.name, "template": s.name}
        if s.needs:
            task["dependencies"] = list(s.needs)
        arts = [{"name": artifact_name(dep, out),
                 "from": "{{tasks.%s.outputs.artifacts.%s}}" % (dep, artifact_name(dep, out))}
                for dep in s.needs for out in producers[dep].outputs]
        if arts:
            task["arguments"] = {"artifacts": arts}
        tasks.append(task)
    labels = provenance_labels(p)
    spec: dict[str, Any] = {"entrypoint": dag_name}
    if p.service_account:
        spec["serviceAccountName"] = p.service_account
    if p.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in p.image_pull_secrets]
    if p.node_selector:
        spec["nodeSelector"] = dict(p.node_selector)
    if p.tolerations:
        spec["tolerations"] = [dict(t) for t in p.tolerations]
    if p.shm_size:
        spec["volumes"] = [{"name": SHM_VOLUME,
                            "emptyDir": {"medium": "Memory", "sizeLimit": p.shm_size}}]
    spec["podMetadata"] = {"labels": dict(labels)}
    spec["templates"] = [{"name": dag_name, "dag": {"tasks": tasks}}] + [
        _template(p, s, producers) for s in p.steps]
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "generateName": p.name + "-",
            "labels": labels,
            "annotations": provenance_annotations(p),
        },
        "spec": spec,
    }


HEADER = ("Generated by `devloop promote` -- edit devloop.toml / the profile and promote again.\n"
          "`devloop promote --check` fails when this file no longer matches them.\n"
          "Submit: argo submit {path}")


def resource_lines(p: Pipeline) -> list[str]:
    """One line per stage saying what it asks for and where each value came from, for the
    file's header and promote's output: a GPU inherited from the profile is never silent."""
    lines = []
    for s in p.steps:
        r = s.resources
        parts = []
        if r.gpus:
            per = " per node" if s.nodes > 1 else ""
            src = (f" (inherited from profile {p.provenance.profile}; gpus = 0 on the "
                   f"[[stage]] opts out)" if r.gpus_from == "profile" else "")
            parts.append(f"{r.gpus} GPU{'s' if r.gpus != '1' else ''}{per}{src}")
        else:
            parts.append("no GPU")
        if s.nodes > 1:
            parts.insert(0, f"{s.nodes} nodes")
        if r.cpu:
            parts.append(f"cpu {r.cpu}")
        if r.memory:
            parts.append(f"memory {r.memory}")
        if p.shm_size:
            parts.append(f"/dev/shm {p.shm_size}")
        lines.append(f"stage {s.stage}: " + ", ".join(parts))
    return lines
