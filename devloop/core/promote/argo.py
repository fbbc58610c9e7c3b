"""Pipeline -> Argo Workflow (a plain dict, keys in a stable order).

One container (or script) template per stage and one DAG template (`main`) wiring them by
`needs`. The code comes in as a git input artifact at the pinned commit, mounted at the workdir
(or, with no git remote, is the snapshot image's own workdir). A stage's `outputs` are output
artifacts; a stage that needs another receives that stage's outputs at the same paths.
Provenance goes into labels (short, label-safe values) and annotations (everything).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from devloop.core.promote.model import Pipeline, Step, artifact_name

API_VERSION = "argoproj.io/v1alpha1"
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


def _resources(step: Step) -> dict[str, Any]:
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


def _env(step: Step) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in step.env]
    for ref in step.secret_env:
        env.append({"name": ref.env,
                    "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}})
    return env


def _abs(p: Pipeline, rel: str) -> str:
    return posixpath.normpath(posixpath.join(p.workdir, rel))


def _template(p: Pipeline, step: Step, producers: dict[str, Step]) -> dict[str, Any]:
    t: dict[str, Any] = {"name": step.name}
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
    env = _env(step)
    if env:
        body["env"] = env
    if step.secret_env_from:
        body["envFrom"] = [{"secretRef": {"name": n}} for n in step.secret_env_from]
    res = _resources(step)
    if res:
        body["resources"] = res
    t["script" if step.script else "container"] = body
    return t


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
