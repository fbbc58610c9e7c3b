"""devloop's own checks on a generated Argo Workflow, beyond what Argo's JSON schema can say.

Argo's schema has no `additionalProperties: false` and no cross-references, so a workflow can
pass it and still be rejected by the controller: these checks catch that before a commit.
Each problem is one line naming the path inside the document.
"""

from __future__ import annotations

import re
from typing import Any

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ARTIFACT = re.compile(r"^[-a-zA-Z0-9_]+$")
_QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")


def argo_problems(wf: dict[str, Any]) -> list[str]:
    """Every reference, name and graph problem found in an Argo Workflow dict ([] when fine)."""
    problems: list[str] = []
    spec = wf.get("spec") or {}
    templates = spec.get("templates") or []
    names = [t.get("name", "") for t in templates]
    for i, n in enumerate(names):
        if not _DNS_LABEL.match(n or "") or len(n) > 63:
            problems.append(f"spec.templates[{i}].name {n!r} is not a DNS-1123 label")
    if len(set(names)) != len(names):
        problems.append("spec.templates: template names are not unique")
    gen = (wf.get("metadata") or {}).get("generateName") or (wf.get("metadata") or {}).get("name", "")
    if not _DNS_LABEL.match(str(gen).rstrip("-")):
        problems.append(f"metadata name {gen!r} is not DNS-1123")
    entry = spec.get("entrypoint")
    if entry not in names:
        problems.append(f"spec.entrypoint {entry!r} names no template")
    for i, t in enumerate(templates):
        where = f"spec.templates[{i}]"
        for kind in ("container", "script"):
            body = t.get(kind)
            if body:
                for part in ("requests", "limits"):
                    for key, q in ((body.get("resources") or {}).get(part) or {}).items():
                        if not isinstance(q, str) or not _QUANTITY.match(q):
                            problems.append(f"{where}.{kind}.resources.{part}.{key}: {q!r} is not "
                                            f"a quantity string")
                for j, e in enumerate(body.get("env") or []):
                    if "value" in e and not isinstance(e["value"], str):
                        problems.append(f"{where}.{kind}.env[{j}].value is not a string")
        for part in ("inputs", "outputs"):
            for j, a in enumerate((t.get(part) or {}).get("artifacts") or []):
                if not _ARTIFACT.match(a.get("name", "")):
                    problems.append(f"{where}.{part}.artifacts[{j}].name {a.get('name')!r} is invalid")
        dag = t.get("dag")
        if not dag:
            continue
        tasks = dag.get("tasks") or []
        task_names = [k.get("name") for k in tasks]
        if len(set(task_names)) != len(task_names):
            problems.append(f"{where}.dag.tasks: task names are not unique")
        graph: dict[str, list[str]] = {}
        for j, task in enumerate(tasks):
            tw = f"{where}.dag.tasks[{j}]"
            if task.get("template") not in names:
                problems.append(f"{tw}.template {task.get('template')!r} names no template")
            if task.get("template") == t.get("name"):
                problems.append(f"{tw}.template refers to its own DAG")
            deps = list(task.get("dependencies") or [])
            for d in deps:
                if d not in task_names:
                    problems.append(f"{tw}.dependencies: {d!r} is not a task of this DAG")
            graph[task.get("name")] = deps
            target = next((x for x in templates if x.get("name") == task.get("template")), {})
            wanted = {a["name"] for a in (target.get("inputs") or {}).get("artifacts") or []
                      if not any(k in a for k in ("git", "http", "s3", "gcs", "raw", "oss", "hdfs",
                                                  "artifactory", "azure", "from"))}
            given = {a.get("name") for a in (task.get("arguments") or {}).get("artifacts") or []}
            for missing in sorted(wanted - given):
                problems.append(f"{tw}.arguments.artifacts: input artifact {missing!r} is not given")
            for a in (task.get("arguments") or {}).get("artifacts") or []:
                m = re.match(r"^\{\{tasks\.([^.]+)\.outputs\.artifacts\.([^}]+)\}\}$", a.get("from", ""))
                if not m:
                    continue
                src, art = m.groups()
                if src not in deps:
                    problems.append(f"{tw}: artifact from {src!r}, which is not a dependency")
                src_tpl = next((x for x in templates if x.get("name") ==
                                next((k.get("template") for k in tasks if k.get("name") == src), None)), {})
                outs = {o.get("name") for o in (src_tpl.get("outputs") or {}).get("artifacts") or []}
                if art not in outs:
                    problems.append(f"{tw}: task {src!r} has no output artifact {art!r}")
        cycle = _find_cycle(graph)
        if cycle:
            problems.append(f"{where}.dag: dependency cycle {' -> '.join(cycle)}")
    return problems


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        stack.append(n)
        for d in graph.get(n, []):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return []

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []


# `pip install devloop`, `uv pip install "devloop==0.1.0"`, `pipx install devloop`, ...: the
# name on the package index belongs to another project (dependency confusion)
_INSTALL_BY_NAME = re.compile(
    r"\b(pip3?|pipx|uv\s+pip|uv\s+tool|python3?\s+-m\s+pip|poetry|conda|mamba)\s+(install|add)\b"
    r"[^\n;&|]*?(?<![-\w./])[\"']?devloop(?![-\w.])")
_SHA_PIN = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def installs_devloop_by_name(command: str) -> bool:
    """True when a shell command would fetch `devloop` from a package index by name."""
    return bool(_INSTALL_BY_NAME.search(command or ""))


def github_problems(wf: dict[str, Any]) -> list[str]:
    """Job references, cycles, actions not pinned by SHA and installs of devloop by name in a
    GitHub workflow dict ([] when fine)."""
    problems: list[str] = []
    jobs = wf.get("jobs") or {}
    graph: dict[str, list[str]] = {}
    for name, job in jobs.items():
        for i, step in enumerate(job.get("steps") or []):
            if installs_devloop_by_name(str(step.get("run", ""))):
                problems.append(f"jobs.{name}.steps[{i}].run installs devloop from a package "
                                f"index by name (another project owns that name there)")
            uses = str(step.get("uses", ""))
            if uses and not uses.startswith(("./", "docker://")) and not _SHA_PIN.match(uses):
                problems.append(f"jobs.{name}.steps[{i}].uses {uses!r} is not pinned by commit SHA")
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        for n in needs:
            if n not in jobs:
                problems.append(f"jobs.{name}.needs: {n!r} is not a job")
        graph[name] = needs
        if not re.match(r"^[A-Za-z_][-A-Za-z0-9_]*$", name):
            problems.append(f"jobs.{name}: invalid job id")
    cycle = _find_cycle(graph)
    if cycle:
        problems.append(f"jobs: dependency cycle {' -> '.join(cycle)}")
    return problems


def kubeflow_problems(doc: dict[str, Any]) -> list[str]:
    """What the PyTorchJob / TrainJob CRDs' schemas cannot say but the operators need: a
    DNS-1123 name, quantities as strings, the `pytorch` container, whole replica counts."""
    if doc.get("kind") == "List":
        return [f"items[{i}].{p}" for i, item in enumerate(doc.get("items") or [])
                for p in kubeflow_problems(item)]
    problems: list[str] = []
    meta = doc.get("metadata") or {}
    name = str(meta.get("generateName") or meta.get("name") or "").rstrip("-")
    if not _DNS_LABEL.match(name) or len(name) > 58:
        problems.append(f"metadata name {name!r} is not DNS-1123 (at most 58 before the suffix)")
    spec = doc.get("spec") or {}

    def quantities(res: dict | None, where: str) -> None:
        for part in ("requests", "limits"):
            for key, q in ((res or {}).get(part) or {}).items():
                if not isinstance(q, str) or not _QUANTITY.match(q):
                    problems.append(f"{where}.{part}.{key}: {q!r} is not a quantity string")

    if doc.get("kind") == "PyTorchJob":
        for role, rs in (spec.get("pytorchReplicaSpecs") or {}).items():
            where = f"spec.pytorchReplicaSpecs.{role}"
            if not isinstance(rs.get("replicas"), int) or rs["replicas"] < 1:
                problems.append(f"{where}.replicas is not a whole number >= 1")
            containers = ((rs.get("template") or {}).get("spec") or {}).get("containers") or []
            if not any(c.get("name") == "pytorch" for c in containers):
                problems.append(f"{where}: no container named 'pytorch' (the operator needs it)")
            for i, c in enumerate(containers):
                quantities(c.get("resources"), f"{where}.template.spec.containers[{i}].resources")
        if "Master" not in (spec.get("pytorchReplicaSpecs") or {}):
            problems.append("spec.pytorchReplicaSpecs has no Master")
    elif doc.get("kind") == "TrainJob":
        trainer = spec.get("trainer") or {}
        if not (spec.get("runtimeRef") or {}).get("name"):
            problems.append("spec.runtimeRef.name is missing")
        if not isinstance(trainer.get("numNodes"), int) or trainer["numNodes"] < 1:
            problems.append("spec.trainer.numNodes is not a whole number >= 1")
        quantities(trainer.get("resourcesPerNode"), "spec.trainer.resourcesPerNode")
    return problems
