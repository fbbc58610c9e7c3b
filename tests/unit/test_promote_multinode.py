"""A 2-node x 8-GPU stage on every promote target: golden files, the CRDs' own schemas
(openAPIV3Schema of the PyTorchJob and TrainJob CustomResourceDefinitions, vendored in
tests/schemas/), Argo's schema and devloop's checks, and the errors for what cannot be expressed.

Golden files live in tests/golden/; regenerate with DEVLOOP_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from devloop.core.promote import yamltext
from devloop.core.promote.model import (CodeRef, PromoteError, Provenance, StageSpec, TargetSpec,
                                        build_pipeline)
from devloop.core.promote.service import render
from devloop.core.promote.validate import argo_problems

HERE = Path(__file__).resolve().parent.parent
GOLDEN = HERE / "golden"
SCHEMAS = HERE / "schemas"
IMAGE = "registry.example.com/ml/train@sha256:" + "0123456789abcdef" * 4
COMMIT = "c" * 40


def pipeline(tmp_path: Path, *, run: str = "train.py --epochs 3", nodes: int = 2, outputs=(),
             repo_url: str = "https://github.com/acme/mnist.git", runtime: str = "torch-distributed",
             pull_secrets=("regcred",), cells: bool = False):
    (tmp_path / "prep.py").write_text("print('prep')\n")
    (tmp_path / "train.py").write_text("# %%\nimport os\n\n# %% train\nprint('train')\n")
    (tmp_path / "pkg").mkdir(exist_ok=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "train.py").write_text("print('train')\n")
    stages = [
        StageSpec(name="prepare", run="prep.py", gpus=0, line=5),
        StageSpec(name="train", run=run, needs=("prepare",), gpus=8, nodes=nodes,
                  outputs=tuple(outputs), env={"EPOCHS": "3"}, line=11),
    ]
    target = TargetSpec(
        name="k8s-gpu", file="profiles/k8s-gpu.yaml", image="unused:tag", gpus=1, cpu="32",
        memory="256Gi", shm_size="16Gi", kind="kubernetes",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        env={"NCCL_DEBUG": "WARN"},
        env_from_secrets=({"name": "WANDB_API_KEY", "secret": "wandb", "key": "api-key"},),
        image_pull_secrets=tuple(pull_secrets), workdir="/workspace", service_account="trainer",
        trainjob_runtime=runtime)
    prov = Provenance(run_id="3f1b6c1e-8a51-4a8e-9d47-0f4d2b2e7a10", git_commit=COMMIT,
                      dirty=False, diff_sha256="", image_digest="sha256:" + "0123456789abcdef" * 4,
                      profile="k8s-gpu", devloop_version="0.1.0", time="2025-01-01T00:00:00Z")
    return build_pipeline(name="mnist", stages=stages, entry="train.py", target=target,
                          run_env={"PYTHONUNBUFFERED": "1"}, image=IMAGE,
                          code=CodeRef(commit=COMMIT, repo_url=repo_url), provenance=prov,
                          root=tmp_path)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DEVLOOP_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}: run with DEVLOOP_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: review, then DEVLOOP_UPDATE_GOLDEN=1"


def out(p, target: str) -> tuple[str, dict]:
    suffix = {"argo": ".argo.yaml", "pytorchjob": ".pytorchjob.yaml", "trainjob": ".trainjob.yaml",
              "github": ".yml"}[target]
    text, _ = render(p, target, Path("pipelines") / f"mnist{suffix}")
    return text, yamltext.load(text)


# ------------------------------------------------------------------ CRD schemas


def _crd_validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads((SCHEMAS / name).read_text()))


@pytest.fixture(scope="module")
def pytorchjob_schema():
    return _crd_validator("kubeflow.org_pytorchjobs.v1.openapi.json")


@pytest.fixture(scope="module")
def trainjob_schema():
    return _crd_validator("trainer.kubeflow.org_trainjobs.v1alpha1.openapi.json")


@pytest.fixture(scope="module")
def argo_schema():
    return jsonschema.Draft202012Validator(
        json.loads((SCHEMAS / "argo-workflows-v4.1.2.schema.json").read_text()))


def pruned(doc: Any, schema: dict, where: str = "") -> list[str]:
    """Fields the API server would silently drop: keys a structural schema does not declare
    (a JSON Schema validator lets them through, so a misspelled field would pass unseen)."""
    found: list[str] = []
    if isinstance(doc, dict) and schema.get("type") == "object" or "properties" in schema:
        if not isinstance(doc, dict):
            return found
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            if props is not None and key in props:
                found += pruned(value, props[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += pruned(value, extra, f"{where}.{key}")
            elif props is not None and where != ".metadata":
                found.append(f"{where}.{key}")
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(doc):
            found += pruned(item, schema["items"], f"{where}[{i}]")
    return found


def crd_problems(doc: dict, validator: jsonschema.Draft7Validator) -> list[str]:
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(doc)]
    problems += [f"{p}: not in the CRD's schema (pruned)" for p in pruned(doc, validator.schema)]
    meta = doc.get("metadata") or {}
    name = (meta.get("generateName") or meta.get("name") or "").rstrip("-")
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name) or len(name) > 58:
        problems.append(f"metadata name {name!r} is not DNS-1123 (<= 58 before the suffix)")
    for part in ("labels", "annotations"):
        for k, v in (meta.get(part) or {}).items():
            if not isinstance(v, str):
                problems.append(f"metadata.{part}.{k} is not a string")
    return problems


def test_the_vendored_crd_schemas_really_check(tmp_path: Path, pytorchjob_schema, trainjob_schema):
    """Schema validation fails on what the API server refuses (a string replica count, an
    unknown field): the tests below are not vacuous."""
    _, job = out(pipeline(tmp_path), "pytorchjob")
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "1"
    assert crd_problems(job, pytorchjob_schema)
    _, job = out(pipeline(tmp_path), "pytorchjob")
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["shm"] = 1
    assert any("pruned" in p for p in crd_problems(job, pytorchjob_schema))
    _, tj = out(pipeline(tmp_path, pull_secrets=()), "trainjob")
    del tj["spec"]["runtimeRef"]
    assert crd_problems(tj, trainjob_schema)


# ------------------------------------------------------------------ PyTorchJob


def test_pytorchjob_golden(tmp_path: Path):
    golden("multinode_2x8.pytorchjob.yaml", out(pipeline(tmp_path), "pytorchjob")[0])


def test_pytorchjob_validates_against_its_crd(tmp_path: Path, pytorchjob_schema):
    _, job = out(pipeline(tmp_path), "pytorchjob")
    assert crd_problems(job, pytorchjob_schema) == []


def test_pytorchjob_shape(tmp_path: Path):
    _, job = out(pipeline(tmp_path), "pytorchjob")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
    assert job["spec"]["nprocPerNode"] == "8"
    pod = replicas["Worker"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["name"] == "pytorch" and c["image"] == IMAGE
    script = c["command"][2]
    assert ("torchrun --nnodes=2 --nproc-per-node=8 --node-rank=\"$RANK\" "
            "--master-addr=\"$MASTER_ADDR\" --master-port=\"$MASTER_PORT\" train.py --epochs 3") in script
    assert f"git fetch -q --depth 1 https://github.com/acme/mnist.git {COMMIT}" in script
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e for e in c["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb", "key": "api-key"}
    meta = job["metadata"]
    assert meta["labels"]["devloop.dev/run-id"] == "3f1b6c1e-8a51-4a8e-9d47-0f4d2b2e7a10"
    assert meta["labels"]["devloop.dev/git-commit"] == COMMIT
    assert meta["annotations"]["devloop.dev/image-digest"] == "sha256:" + "0123456789abcdef" * 4
    assert replicas["Master"]["template"]["metadata"]["labels"]["devloop.dev/run-id"]


def test_a_module_stage_runs_under_torchrun_with_m(tmp_path: Path, pytorchjob_schema):
    _, job = out(pipeline(tmp_path, run="python -m pkg.train --lr 0.1"), "pytorchjob")
    script = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"][2]
    assert script.rstrip().endswith("-m pkg.train --lr 0.1")
    assert crd_problems(job, pytorchjob_schema) == []


def test_code_in_the_snapshot_image_needs_no_fetch(tmp_path: Path, pytorchjob_schema):
    _, job = out(pipeline(tmp_path, repo_url=""), "pytorchjob")
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert "git" not in pod["containers"][0]["command"][2]
    assert [v["name"] for v in pod["volumes"]] == ["dshm"]
    assert crd_problems(job, pytorchjob_schema) == []


# ------------------------------------------------------------------ TrainJob


def test_trainjob_golden(tmp_path: Path):
    golden("multinode_2x8.trainjob.yaml", out(pipeline(tmp_path, pull_secrets=()), "trainjob")[0])


def test_trainjob_validates_against_its_crd(tmp_path: Path, trainjob_schema):
    _, tj = out(pipeline(tmp_path, pull_secrets=()), "trainjob")
    assert crd_problems(tj, trainjob_schema) == []


def test_trainjob_shape_and_runtime(tmp_path: Path):
    _, tj = out(pipeline(tmp_path, pull_secrets=()), "trainjob")
    assert (tj["apiVersion"], tj["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    spec = tj["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed"}
    assert spec["trainer"]["numNodes"] == 2 and spec["trainer"]["numProcPerNode"] == 8
    assert spec["trainer"]["image"] == IMAGE
    assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert "exec torchrun train.py --epochs 3" in spec["trainer"]["command"][2]
    [override] = spec["podSpecOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in override["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in override["containers"][0]["volumeMounts"]
    assert tj["metadata"]["annotations"]["devloop.dev/git-commit"] == COMMIT
    _, other = out(pipeline(tmp_path, pull_secrets=(), runtime="torch-distributed-h100"), "trainjob")
    assert other["spec"]["runtimeRef"] == {"name": "torch-distributed-h100"}


def test_trainjob_refuses_image_pull_secrets_it_cannot_express(tmp_path: Path):
    with pytest.raises(PromoteError) as info:
        out(pipeline(tmp_path), "trainjob")
    assert "image_pull_secrets" in str(info.value) and "fix:" in str(info.value)
    assert "k8s-gpu.yaml" in str(info.value)


# ------------------------------------------------------------------ Argo


def test_argo_golden(tmp_path: Path):
    golden("multinode_2x8.argo.yaml", out(pipeline(tmp_path), "argo")[0])


def test_argo_wraps_the_pytorchjob_in_a_resource_step(tmp_path: Path, argo_schema, pytorchjob_schema):
    _, wf = out(pipeline(tmp_path), "argo")
    assert [e.message for e in argo_schema.iter_errors(wf)] == []
    assert argo_problems(wf) == []
    by_name = {t["name"]: t for t in wf["spec"]["templates"]}
    res = by_name["train"]["resource"]
    assert res["action"] == "create" and res["setOwnerReference"] is True
    assert res["successCondition"] == "status.replicaStatuses.Master.succeeded > 0"
    assert res["failureCondition"] == "status.replicaStatuses.Master.failed > 0"
    job = yamltext.load(res["manifest"])
    assert job["kind"] == "PyTorchJob" and crd_problems(job, pytorchjob_schema) == []
    _, standalone = out(pipeline(tmp_path), "pytorchjob")
    assert job == standalone
    dag = by_name[wf["spec"]["entrypoint"]]["dag"]["tasks"]
    assert {"name": "train", "template": "train", "dependencies": ["prepare"]} in dag
    # the single-node step keeps the profile's /dev/shm too
    assert {"name": "dshm", "mountPath": "/dev/shm"} in by_name["prepare"]["container"]["volumeMounts"]
    assert wf["spec"]["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory",
                                                                   "sizeLimit": "16Gi"}}]


def test_argo_refuses_outputs_of_a_multi_node_stage(tmp_path: Path):
    with pytest.raises(PromoteError) as info:
        out(pipeline(tmp_path, outputs=("out/model.pt",)), "argo")
    assert "outputs" in str(info.value) and "fix:" in str(info.value)


# ------------------------------------------------------------------ what cannot be multi-node


def test_github_refuses_a_multi_node_stage(tmp_path: Path):
    with pytest.raises(PromoteError) as info:
        out(pipeline(tmp_path), "github")
    text = str(info.value)
    assert "2 nodes" in text and "--target pytorchjob" in text


@pytest.mark.parametrize("run", ["train.py:1-2", "bash train.sh"])
def test_a_multi_node_stage_must_run_a_script_or_module(tmp_path: Path, run: str):
    with pytest.raises(PromoteError) as info:
        pipeline(tmp_path, run=run)
    text = str(info.value)
    assert "field 'run'" in text and "2 nodes" in text and "python -m pkg.train" in text


def test_kubeflow_targets_need_a_multi_node_stage(tmp_path: Path):
    with pytest.raises(PromoteError) as info:
        out(pipeline(tmp_path, nodes=1), "pytorchjob")
    assert "nodes > 1" in str(info.value)


def test_header_names_each_stage_resources(tmp_path: Path):
    text, _ = out(pipeline(tmp_path), "argo")
    assert "# Submit: argo submit pipelines/mnist.argo.yaml" in text
    assert "# stage train: 2 nodes, 8 GPUs per node, cpu 32, memory 256Gi, /dev/shm 16Gi" in text
    assert "# stage prepare: no GPU" in text


def test_devloop_checks_what_the_crd_schemas_leave_out(tmp_path: Path):
    from devloop.core.promote.validate import kubeflow_problems

    _, job = out(pipeline(tmp_path), "pytorchjob")
    assert kubeflow_problems(job) == []
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["name"] = "main"
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]["nvidia.com/gpu"] = 8
    job["metadata"]["generateName"] = "Bad_Name-"
    problems = "\n".join(kubeflow_problems(job))
    assert "no container named 'pytorch'" in problems and "is not a quantity string" in problems
    assert "DNS-1123" in problems
    _, tj = out(pipeline(tmp_path, pull_secrets=()), "trainjob")
    assert kubeflow_problems(tj) == []
