"""Argo / GitHub output of a two-stage GPU pipeline: golden files, published schemas, own checks.

Golden files live in tests/golden/; regenerate with DEVLOOP_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import check_jsonschema
import jsonschema
import pytest

from devloop.core.promote import argo, github, yamltext
from devloop.core.promote.check import drift, substance
from devloop.core.promote.model import (CodeRef, Provenance, StageSpec, TargetSpec,
                                        build_pipeline)
from devloop.core.promote.service import render
from devloop.core.promote.validate import argo_problems, github_problems

HERE = Path(__file__).resolve().parent.parent
GOLDEN = HERE / "golden"
ARGO_SCHEMA = HERE / "schemas" / "argo-workflows-v4.1.2.schema.json"
GH_SCHEMA = (Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor"
             / "github-workflows.json")
IMAGE = "registry.example.com/ml/train@sha256:" + "0123456789abcdef" * 4

TRAIN = """# %% imports
import json, os

# %% [markdown]
# Train a tiny model.

# %% train
os.makedirs("out", exist_ok=True)
json.dump({"loss": 0.1}, open("out/metrics.json", "w"))
"""


def two_stage_gpu(tmp_path: Path, *, repo_url: str = "https://github.com/acme/mnist.git"):
    (tmp_path / "prep.py").write_text("print('prep')\n")
    (tmp_path / "train.py").write_text(TRAIN)
    stages = [
        StageSpec(name="prepare_data", run="prep.py", outputs=("data/train.npz",), gpus=0, line=9),
        StageSpec(name="train", run="train.py:1-2", needs=("prepare_data",),
                  outputs=("out/model.pt", "out/metrics.json"), env={"EPOCHS": "3"}, line=15),
    ]
    target = TargetSpec(
        name="k8s-gpu", file="profiles/k8s-gpu.yaml", image="unused:tag", gpus=1, cpu=8,
        memory="32Gi", node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        env={"WANDB_PROJECT": "mnist"},
        env_from_secrets=({"name": "WANDB_API_KEY", "secret": "wandb", "key": "api-key"},),
        image_pull_secrets=("regcred",), runs_on=("self-hosted", "gpu"), workdir="/workspace",
        service_account="trainer")
    prov = Provenance(run_id="3f1b6c1e-8a51-4a8e-9d47-0f4d2b2e7a10", git_commit="c" * 40,
                      dirty=False, diff_sha256="", image_digest="sha256:" + "0123456789abcdef" * 4,
                      profile="k8s-gpu", devloop_version="0.1.0", time="2025-01-01T00:00:00Z")
    return build_pipeline(name="mnist", stages=stages, entry="train.py", target=target,
                          run_env={"PYTHONUNBUFFERED": "1"}, image=IMAGE,
                          code=CodeRef(commit="c" * 40, repo_url=repo_url), provenance=prov,
                          root=tmp_path)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DEVLOOP_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}: run with DEVLOOP_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: review, then DEVLOOP_UPDATE_GOLDEN=1"


@pytest.fixture(scope="module")
def argo_validator():
    return jsonschema.Draft202012Validator(json.loads(ARGO_SCHEMA.read_text()))


@pytest.fixture(scope="module")
def gh_validator():
    return jsonschema.Draft7Validator(json.loads(GH_SCHEMA.read_text()))


def argo_doc(tmp_path: Path) -> dict:
    return yamltext.load(yamltext.dump(argo.to_workflow(two_stage_gpu(tmp_path))))


def gh_doc(tmp_path: Path) -> dict:
    return yamltext.load(yamltext.dump(github.to_workflow(two_stage_gpu(tmp_path))))


# ------------------------------------------------------------------ golden


def test_argo_golden(tmp_path: Path):
    golden("two_stage_gpu.argo.yaml",
           render(two_stage_gpu(tmp_path), "argo", Path("pipelines/mnist.argo.yaml"))[0])


def test_github_golden(tmp_path: Path):
    golden("two_stage_gpu.github.yml",
           render(two_stage_gpu(tmp_path), "github", Path(".github/workflows/mnist.yml"))[0])


def test_output_is_byte_stable(tmp_path: Path):
    p = two_stage_gpu(tmp_path)
    assert yamltext.dump(argo.to_workflow(p)) == yamltext.dump(argo.to_workflow(p))


# ------------------------------------------------------------------ Argo


def test_argo_validates_against_published_schema(tmp_path: Path, argo_validator):
    errors = [e.message for e in argo_validator.iter_errors(argo_doc(tmp_path))]
    assert errors == []


def test_argo_schema_rejects_an_integer_gpu_quantity(tmp_path: Path, argo_validator):
    """The vendored schema really checks what we rely on (quantities must be strings)."""
    doc = argo_doc(tmp_path)
    doc["spec"]["templates"][2]["script"]["resources"]["limits"]["nvidia.com/gpu"] = 1
    assert not argo_validator.is_valid(doc)


def test_argo_passes_devloop_checks(tmp_path: Path):
    assert argo_problems(argo_doc(tmp_path)) == []


def test_argo_shape(tmp_path: Path):
    doc = argo_doc(tmp_path)
    spec = doc["spec"]
    by_name = {t["name"]: t for t in spec["templates"]}
    tasks = {t["name"]: t for t in by_name[spec["entrypoint"]]["dag"]["tasks"]}
    assert tasks["train"]["dependencies"] == ["prepare-data"]
    train = by_name["train"]
    assert train["script"]["image"] == IMAGE
    assert train["script"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in by_name["prepare-data"]["container"]["resources"].get("limits", {})
    code = train["inputs"]["artifacts"][0]
    assert code["git"] == {"repo": "https://github.com/acme/mnist.git", "revision": "c" * 40}
    assert {"name": "prepare-data-data-train-npz", "path": "/workspace/data/train.npz"} in train["inputs"]["artifacts"]
    assert [a["path"] for a in train["outputs"]["artifacts"]] == ["/workspace/out/model.pt", "/workspace/out/metrics.json"]
    env = {e["name"]: e for e in train["script"]["env"]}
    assert env["EPOCHS"]["value"] == "3"
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY",
                                    "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"][0]["effect"] == "NoSchedule"
    ann = doc["metadata"]["annotations"]
    for key in ("run-id", "git-commit", "dirty", "image-digest", "profile", "devloop-version"):
        assert f"devloop.dev/{key}" in ann
    assert doc["metadata"]["labels"]["devloop.dev/run-id"] == "3f1b6c1e-8a51-4a8e-9d47-0f4d2b2e7a10"


def test_code_from_snapshot_image_has_no_git_artifact(tmp_path: Path, argo_validator):
    doc = yamltext.load(yamltext.dump(argo.to_workflow(two_stage_gpu(tmp_path, repo_url=""))))
    prep = next(t for t in doc["spec"]["templates"] if t["name"] == "prepare-data")
    assert "inputs" not in prep
    assert argo_validator.is_valid(doc) and argo_problems(doc) == []


def test_devloop_checks_catch_what_the_schema_cannot(tmp_path: Path, argo_validator):
    doc = argo_doc(tmp_path)
    bad = copy.deepcopy(doc)
    bad["spec"]["entrypoint"] = "nope"
    bad["spec"]["templates"][0]["dag"]["tasks"][0]["dependencies"] = ["train"]  # a cycle
    bad["spec"]["templates"][0]["dag"]["tasks"][1]["template"] = "missing"
    bad["spec"]["templates"][1]["name"] = "Prepare_Data"
    assert argo_validator.is_valid(bad)  # the published schema lets all of this through
    problems = "\n".join(argo_problems(bad))
    assert "entrypoint 'nope'" in problems
    assert "cycle" in problems
    assert "'missing' names no template" in problems
    assert "DNS-1123" in problems


# ------------------------------------------------------------------ GitHub


def test_github_validates_against_schemastore(tmp_path: Path, gh_validator):
    doc = gh_doc(tmp_path)
    assert "on" in doc and True not in doc
    errors = [e.message for e in gh_validator.iter_errors(doc)]
    assert errors == []
    assert github_problems(doc) == []


def test_github_shape(tmp_path: Path):
    jobs = gh_doc(tmp_path)["jobs"]
    assert jobs["train"]["needs"] == ["prepare-data"]
    assert jobs["train"]["runs-on"] == ["self-hosted", "gpu"]
    assert jobs["train"]["container"] == {"image": IMAGE, "options": "--gpus 1"}
    assert "options" not in jobs["prepare-data"]["container"]
    assert jobs["train"]["env"]["WANDB_API_KEY"] == "${{ secrets.WANDB_API_KEY }}"
    runs = [s.get("run", "") for s in jobs["prepare-data"]["steps"]]
    assert "python prep.py" in runs  # the image's Python: never devloop from a package index
    train_steps = jobs["train"]["steps"]
    assert train_steps[0]["with"]["ref"] == "c" * 40
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in train_steps)
    py = next(s for s in train_steps if s.get("shell") == "python")
    assert "json.dump" in py["run"]
    upload = train_steps[-1]
    assert upload["uses"].startswith("actions/upload-artifact")
    assert "out/model.pt" in upload["with"]["path"]


def test_bare_on_key_is_read_back_as_on():
    assert yamltext.load("on:\n  push: {}\njobs: {}\n") == {"on": {"push": {}}, "jobs": {}}


# ------------------------------------------------------------------ substance comparison


def test_provenance_changes_are_not_drift(tmp_path: Path):
    doc = argo_doc(tmp_path)
    other = copy.deepcopy(doc)
    for meta in (other["metadata"]["labels"], other["metadata"]["annotations"],
                 other["spec"]["podMetadata"]["labels"]):
        meta["devloop.dev/run-id"] = "another"
        meta["devloop.dev/git-commit"] = "d" * 40
    other["spec"]["templates"][1]["inputs"]["artifacts"][0]["git"]["revision"] = "d" * 40
    assert substance(doc) == substance(other)
    assert drift(yamltext.dump(doc), other, "p.yaml") == ""


def test_resource_change_is_drift_with_a_unified_diff(tmp_path: Path):
    doc = argo_doc(tmp_path)
    other = copy.deepcopy(doc)
    other["spec"]["templates"][2]["script"]["resources"]["limits"]["nvidia.com/gpu"] = "2"
    diff = drift(yamltext.dump(doc), other, "pipelines/mnist.argo.yaml")
    assert diff.startswith("--- pipelines/mnist.argo.yaml (committed)")
    assert "-            nvidia.com/gpu: '1'" in diff and "+            nvidia.com/gpu: '2'" in diff


# ------------------------------------------------------------------ dependency confusion


@pytest.mark.parametrize("command", [
    'python -m pip install "devloop==0.1.0"', "pip install devloop", "pip3 install -U devloop",
    "uv pip install devloop==0.1.0", "pipx install devloop", "pip install 'devloop>=0.1' numpy",
])
def test_a_workflow_that_installs_devloop_by_name_fails(tmp_path: Path, command: str):
    doc = gh_doc(tmp_path)
    doc["jobs"]["train"]["steps"].insert(1, {"name": "Install devloop", "run": command})
    problems = github_problems(doc)
    assert any("installs devloop from a package index by name" in p for p in problems), problems


@pytest.mark.parametrize("command", ["pip install -r requirements.txt", "pip install devloop-ml",
                                     "python train.py --devloop", "pip install ./devloop"])
def test_other_installs_are_not_mistaken_for_devloop(command: str):
    from devloop.core.promote.validate import installs_devloop_by_name
    assert not installs_devloop_by_name(command)


def test_generated_workflow_installs_nothing_by_name_and_pins_actions(tmp_path: Path):
    text = (GOLDEN / "two_stage_gpu.github.yml").read_text()
    assert github_problems(yamltext.load(text)) == []
    assert "pip install" not in text
    for line in text.splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_an_action_by_tag_is_a_problem(tmp_path: Path):
    doc = gh_doc(tmp_path)
    doc["jobs"]["train"]["steps"][0]["uses"] = "actions/checkout@v4"
    assert any("not pinned by commit SHA" in p for p in github_problems(doc))
