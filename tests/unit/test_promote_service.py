"""promote end to end in a temporary git repository: write, --commit, --check drift, dirty tree,
image pinning from snapshots, and the CLI's exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from devloop.cli import main as cli_main
from devloop.core.config import load_config
from devloop.core.promote import PromoteError, check, promote, promote_many
from devloop.core.promote import yamltext

DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = "registry.example.com/ml/train@" + DIGEST

TOML = """[project]
name = "mnist"
entry = "train.py"
profile = "k8s-gpu"

[[stage]]
name = "prepare"
run = "prep.py"
outputs = ["data/train.npz"]
gpus = 0

[[stage]]
name = "train"
run = "train.py:1-2"
needs = ["prepare"]
outputs = ["out/model.pt"]

[promote]
targets = ["argo", "github"]
"""

PROFILE = """kind: kubernetes
image: {image}
gpus: 1
cpu: "4"
memory: 16Gi
runs_on: [self-hosted, gpu]
env:
  WANDB_PROJECT: mnist
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                 "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "mnist"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/mnist.git")
    (repo / "devloop.toml").write_text(TOML)
    (repo / "profiles").mkdir()
    (repo / "profiles" / "k8s-gpu.yaml").write_text(PROFILE.format(image=PINNED))
    (repo / "prep.py").write_text("print('prep')\n")
    (repo / "train.py").write_text("# %%\nimport os\n\n# %% train\nprint('train')\n")
    (repo / ".gitignore").write_text(".devloop/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    monkeypatch.chdir(repo)
    return repo


def cfg(repo: Path):
    return load_config(repo)


def test_promote_writes_both_targets_with_provenance(project: Path):
    results = promote_many(cfg(project))
    assert [r.path for r in results] == [project / "pipelines" / "mnist.argo.yaml",
                                         project / ".github" / "workflows" / "mnist.yml"]
    doc = yamltext.load(results[0].path.read_text())
    ann = doc["metadata"]["annotations"]
    assert ann["devloop.dev/run-id"] == results[0].run_id
    assert ann["devloop.dev/git-commit"] == git(project, "rev-parse", "HEAD").strip()
    assert ann["devloop.dev/dirty"] == "false"
    assert ann["devloop.dev/image-digest"] == DIGEST
    assert not results[0].committed


def test_commit_then_check_passes(project: Path):
    r = promote(cfg(project), target="argo", commit=True)
    assert r.committed and r.commit == git(project, "rev-parse", "HEAD").strip()
    assert r.run_id in git(project, "log", "-1", "--format=%B")
    assert git(project, "status", "--porcelain") == ""
    [res] = check(cfg(project), targets=["argo"])
    assert res.ok, res.diff


def test_check_after_a_later_commit_still_passes(project: Path):
    promote_many(cfg(project), commit=True)
    (project / "README.md").write_text("docs\n")
    git(project, "add", "README.md")
    git(project, "commit", "-q", "-m", "docs")
    assert all(r.ok for r in check(cfg(project)))


def test_check_reports_drift_with_a_diff(project: Path):
    promote_many(cfg(project), commit=True)
    (project / "profiles" / "k8s-gpu.yaml").write_text(
        PROFILE.format(image=PINNED).replace("gpus: 1", "gpus: 2"))
    git(project, "commit", "-q", "-am", "two gpus")
    argo_res, gh_res = check(cfg(project))
    assert not argo_res.ok
    assert "-            nvidia.com/gpu: '1'" in argo_res.diff
    assert "+            nvidia.com/gpu: '2'" in argo_res.diff
    assert not gh_res.ok and "+      options: --gpus 2" in gh_res.diff  # the count, not "all"


def test_check_notices_changed_cells(project: Path):
    promote_many(cfg(project), targets=["argo"], commit=True)
    (project / "train.py").write_text("# %%\nimport os\n\n# %% train\nprint('train harder')\n")
    git(project, "commit", "-q", "-am", "edit")
    [res] = check(cfg(project), targets=["argo"])
    assert "+          print('train harder')" in res.diff


def test_check_without_snapshot_uses_the_committed_image(project: Path):
    """CI has no .devloop/snapshots.jsonl (ignored): --check still compares the substance."""
    snap = {"image": "devloop-snap/mnist:r1", "image_id": "sha256:" + "9" * 64,
            "repo_digest": "registry.example.com/snap/mnist@sha256:" + "1" * 64, "git_commit": "x",
            "dirty": False, "time": "t", "run_id": "r1", "profile": "k8s-gpu"}
    (project / ".devloop").mkdir()
    (project / ".devloop" / "snapshots.jsonl").write_text(json.dumps(snap) + "\n")
    promote(cfg(project), target="argo", commit=True)
    (project / ".devloop" / "snapshots.jsonl").unlink()
    (project / "profiles" / "k8s-gpu.yaml").write_text(PROFILE.format(image="python:3.11"))
    git(project, "commit", "-q", "-am", "unpinned profile image")
    [res] = check(cfg(project), targets=["argo"])
    assert res.ok, res.diff
    assert any("committed file's image" in n for n in res.notes)


def test_dirty_tree_refuses_commit_and_names_files(project: Path):
    (project / "prep.py").write_text("print('changed')\n")
    with pytest.raises(PromoteError) as info:
        promote(cfg(project), commit=True)
    assert "prep.py" in str(info.value) and "--allow-dirty" in str(info.value)
    assert not (project / "pipelines").exists()


def test_allow_dirty_records_dirty_and_diff_hash(project: Path):
    (project / "prep.py").write_text("print('changed')\n")
    r = promote(cfg(project), target="argo", commit=True, allow_dirty=True)
    ann = yamltext.load(r.path.read_text())["metadata"]["annotations"]
    assert ann["devloop.dev/dirty"] == "true"
    assert len(ann["devloop.dev/diff-sha256"]) == 64
    assert "(dirty, diff sha256" in git(project, "log", "-1", "--format=%B")
    assert "prep.py" in git(project, "status", "--porcelain")  # the user's change is not committed


def test_untracked_files_do_not_make_the_tree_dirty(project: Path):
    (project / "scratch.py").write_text("x = 1\n")
    assert promote(cfg(project), commit=True).committed


def test_latest_snapshot_for_the_profile_pins_the_image(project: Path):
    rows = [
        {"image": "devloop-snap/mnist:a", "image_id": "sha256:" + "1" * 64,
         "repo_digest": "reg/snap@sha256:" + "a" * 64, "profile": "k8s-gpu"},
        {"image": "devloop-snap/mnist:b", "image_id": "sha256:" + "2" * 64,
         "repo_digest": "reg/snap@sha256:" + "b" * 64, "profile": "k8s-gpu"},
        {"image": "devloop-snap/mnist:c", "image_id": "sha256:" + "3" * 64,
         "repo_digest": "reg/snap@sha256:" + "c" * 64, "profile": "other"},
    ]
    (project / ".devloop").mkdir()
    (project / ".devloop" / "snapshots.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = promote(cfg(project), target="argo")
    doc = yamltext.load(r.path.read_text())
    assert doc["spec"]["templates"][1]["container"]["image"] == "reg/snap@sha256:" + "b" * 64


def test_unpinned_tag_is_an_error_naming_the_profile_field(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(PROFILE.format(image="python:3.11"))
    with pytest.raises(PromoteError) as info:
        promote(cfg(project))
    text = str(info.value)
    assert "k8s-gpu.yaml" in text and "field 'image'" in text
    # a kubernetes profile cannot take snapshots (only docker ones do): advice that converges
    assert "devloop snapshot" not in text and "name@sha256:" in text


def test_allow_unpinned_warns(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(PROFILE.format(image="python:3.11"))
    r = promote(cfg(project), target="argo", allow_unpinned=True)
    assert any("not pinned" in w for w in r.warnings)


def test_unpushed_snapshot_is_an_error_naming_repo_digest(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(PROFILE.format(image="python:3.11"))
    (project / ".devloop").mkdir()
    (project / ".devloop" / "snapshots.jsonl").write_text(json.dumps(
        {"image": "devloop-snap/mnist:r", "image_id": "sha256:" + "1" * 64, "repo_digest": "",
         "profile": "k8s-gpu"}) + "\n")
    with pytest.raises(PromoteError) as info:
        promote(cfg(project))
    assert "repo_digest" in str(info.value) and "never pushed" in str(info.value)


def test_secret_in_profile_env_is_never_written(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(
        PROFILE.format(image=PINNED) + "  HF_TOKEN: hf_supersecretvalue\n")
    with pytest.raises(PromoteError) as info:
        promote_many(cfg(project))
    assert "HF_TOKEN" in str(info.value) and "env_from_secrets" in str(info.value)
    assert "hf_supersecretvalue" not in str(info.value)
    assert not (project / "pipelines").exists()


def test_whole_secret_env_from_works_for_argo_and_is_refused_for_github(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(
        PROFILE.format(image=PINNED) + "env_from_secrets:\n  - wandb\n")
    r = promote(cfg(project), target="argo")
    assert "secretRef:\n              name: wandb" in r.path.read_text()
    with pytest.raises(PromoteError) as info:
        promote(cfg(project), target="github")
    assert "env_from_secrets" in str(info.value) and "k8s-gpu.yaml" in str(info.value)


def test_no_remote_and_no_snapshot_cannot_pin_the_code(project: Path):
    git(project, "remote", "remove", "origin")
    with pytest.raises(PromoteError) as info:
        promote(cfg(project))
    assert "git remote add" in str(info.value)


# ------------------------------------------------------------------ CLI


def test_cli_promote_commit_check_and_drift(project: Path, capsys):
    assert cli_main(["promote", "--commit"]) == 0
    out = capsys.readouterr().out
    assert "wrote pipelines/mnist.argo.yaml" in out and "committed" in out
    assert cli_main(["promote", "--check"]) == 0
    (project / "devloop.toml").write_text(TOML.replace('outputs = ["out/model.pt"]',
                                                       'outputs = ["out/model.pt", "out/log.txt"]'))
    git(project, "commit", "-q", "-am", "another output")
    capsys.readouterr()
    assert cli_main(["promote", "--check", "--target", "argo"]) == 1
    captured = capsys.readouterr()
    assert "+++ pipelines/mnist.argo.yaml (from devloop.toml and the profile)" in captured.out
    assert "/workspace/out/log.txt" in captured.out
    assert "drifted" in captured.err


def test_cli_errors_are_one_line_with_exit_2(project: Path, capsys):
    (project / "prep.py").write_text("print('changed')\n")
    assert cli_main(["promote", "--commit"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("devloop: ") and "fix:" in err


def test_cli_name_and_out(project: Path, capsys):
    assert cli_main(["promote", "--target", "argo", "--name", "nightly", "--out", "ci"]) == 0
    assert (project / "ci" / "nightly.argo.yaml").is_file()
