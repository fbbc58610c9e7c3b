"""`promote --check` that cannot mislead, and the warnings promote gives before a commit
(issue 16 items 2, 4, 6, 7), in real temporary git repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devloop.cli import main as cli_main
from devloop.core.config import load_config
from devloop.core.promote import PromoteError, check, promote, promote_many, yamltext

DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = "registry.example.com/ml/train@" + DIGEST

TOML = """[project]
name = "mnist"
profile = "local"

[[stage]]
name = "prepare"
run = "prep.py"
gpus = 0

[[stage]]
name = "train"
run = "train.py"
needs = ["prepare"]
"""

K8S = f"""kind: kubernetes
image: {PINNED}
gpus: 2
cpu: "8"
memory: 32Gi
shm_size: 8Gi
runs_on: [self-hosted, gpu]
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
    (repo / "profiles" / "k8s-gpu.yaml").write_text(K8S)
    (repo / "prep.py").write_text("print('prep')\n")
    (repo / "train.py").write_text("from model import Net\nimport numpy\nprint(Net)\n")
    (repo / "model.py").write_text("from layers import conv\nNet = 1\n")
    (repo / "layers.py").write_text("conv = 1\n")
    (repo / "notes.md").write_text("notes\n")
    (repo / ".gitignore").write_text(".devloop/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    monkeypatch.chdir(repo)
    return repo


def cfg(repo: Path):
    return load_config(repo)


# ------------------------------------------------------------------ item 6: the recorded profile


def test_check_uses_the_profile_the_file_records_not_the_default(project: Path, capsys):
    """Promoted with k8s-gpu while [project].profile is local: --check must not compare it
    with `local` (which has no image, no GPUs) nor advise a --commit that would rewrite it."""
    promote_many(cfg(project), "k8s-gpu", ["argo"], commit=True)
    [res] = check(cfg(project), targets=["argo"])
    assert res.ok, (res.diff, res.problems)
    assert "--profile k8s-gpu" in res.fix
    assert cli_main(["promote", "--check", "--target", "argo"]) == 0
    # a real drift: the advice keeps the recorded profile
    (project / "profiles" / "k8s-gpu.yaml").write_text(K8S.replace("gpus: 2", "gpus: 4"))
    git(project, "commit", "-q", "-am", "four gpus")
    capsys.readouterr()
    assert cli_main(["promote", "--check", "--target", "argo"]) == 1
    err = capsys.readouterr().err
    assert "--profile k8s-gpu" in err and "--profile local" not in err


def test_check_with_another_profile_than_recorded_fails_and_says_so(project: Path):
    promote_many(cfg(project), "k8s-gpu", ["argo"], commit=True)
    [res] = check(cfg(project), "local", targets=["argo"])
    assert not res.ok
    assert "promoted with profile 'k8s-gpu', not 'local'" in res.problems[0]


# ------------------------------------------------------------------ item 7: code drift


def test_code_drift_after_the_pin_fails_and_names_the_files(project: Path, capsys):
    promote_many(cfg(project), "k8s-gpu", ["argo"], commit=True)
    (project / "layers.py").write_text("conv = 2\n")  # imported by model.py, imported by train.py
    git(project, "commit", "-q", "-am", "change a layer")
    (project / "notes.md").write_text("more notes\n")  # not stage code: no drift
    git(project, "commit", "-q", "-am", "notes")
    (project / "train.py").write_text("from model import Net\nprint(Net, 2)\n")  # uncommitted
    [res] = check(cfg(project), targets=["argo"])
    assert not res.ok and res.diff == ""  # the YAML itself did not change
    [problem] = res.problems
    assert "layers.py" in problem and "train.py" in problem
    assert "notes.md" not in problem and "model.py" not in problem and "prep.py" not in problem
    capsys.readouterr()
    assert cli_main(["promote", "--check", "--target", "argo"]) == 1
    err = capsys.readouterr().err
    assert "layers.py" in err and "up to date" not in capsys.readouterr().out


def test_a_later_commit_of_other_files_is_not_code_drift(project: Path):
    promote_many(cfg(project), "k8s-gpu", ["argo"], commit=True)
    (project / "notes.md").write_text("more\n")
    git(project, "commit", "-q", "-am", "notes")
    assert all(r.ok for r in check(cfg(project), targets=["argo"]))


def test_an_untracked_pipeline_file_is_not_labelled_committed(project: Path, capsys):
    promote_many(cfg(project), "k8s-gpu", ["argo"])  # written, not committed
    path = project / "pipelines" / "mnist.argo.yaml"
    path.write_text(path.read_text().replace("memory: 32Gi", "memory: 64Gi"))
    [res] = check(cfg(project), targets=["argo"])
    assert "(on disk, not committed)" in res.diff and "(committed)" not in res.diff
    assert any("not tracked by git" in n for n in res.notes)


# ------------------------------------------------------------------ item 4: warnings


def test_untracked_stage_file_is_warned(project: Path):
    (project / "train.py").write_text("from helpers import f\n")
    (project / "helpers.py").write_text("f = 1\n")  # imported, never added
    git(project, "commit", "-q", "-am", "use helpers")
    [r] = promote_many(cfg(project), "k8s-gpu", ["argo"])
    assert any("not tracked by git: helpers.py" in w for w in r.warnings), r.warnings


def test_a_pin_on_no_remote_branch_is_warned(project: Path, tmp_path: Path):
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(project, "remote", "set-url", "origin", str(bare))
    git(project, "push", "-q", "origin", "main")
    [r] = promote_many(cfg(project), "k8s-gpu", ["argo"])
    assert not any("remote branch" in w for w in r.warnings)
    (project / "notes.md").write_text("unpushed\n")
    git(project, "commit", "-q", "-am", "local only")
    [r] = promote_many(cfg(project), "k8s-gpu", ["argo"])
    assert any("is on no remote branch" in w and "push it" in w for w in r.warnings), r.warnings


def test_a_dirty_tree_is_warned(project: Path):
    (project / "prep.py").write_text("print('changed')\n")
    [r] = promote_many(cfg(project), "k8s-gpu", ["argo"])
    assert any("uncommitted changes" in w for w in r.warnings)


# ------------------------------------------------------------------ item 2: GitHub runners


def test_gpu_stage_on_a_hosted_runner_is_refused(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(K8S.replace("runs_on: [self-hosted, gpu]",
                                                                   "runs_on: ubuntu-latest"))
    with pytest.raises(PromoteError) as info:
        promote(cfg(project), "k8s-gpu", target="github")
    text = str(info.value)
    assert "k8s-gpu.yaml" in text and "field 'runs_on'" in text and "GitHub-hosted" in text
    assert "train" in text and "self-hosted" in text


def test_runs_on_from_promote_github(project: Path):
    (project / "profiles" / "k8s-gpu.yaml").write_text(K8S.replace("runs_on: [self-hosted, gpu]\n", ""))
    with pytest.raises(PromoteError) as info:
        promote(cfg(project), "k8s-gpu", target="github")
    assert "no runs-on is set" in str(info.value)
    (project / "devloop.toml").write_text(TOML + '\n[promote.github]\nruns_on = ["self-hosted", "linux", "h100"]\n')
    r = promote(cfg(project), "k8s-gpu", target="github")
    doc = yamltext.load(r.path.read_text())
    assert doc["jobs"]["train"]["runs-on"] == ["self-hosted", "linux", "h100"]
    assert doc["jobs"]["train"]["container"]["options"] == "--gpus 2 --shm-size 8g"
    assert "options" not in doc["jobs"]["prepare"]["container"] or \
        "--gpus" not in doc["jobs"]["prepare"]["container"]["options"]


def test_no_gpu_pipeline_runs_on_a_hosted_runner(project: Path):
    (project / "profiles" / "cpu.yaml").write_text(f"kind: kubernetes\nimage: {PINNED}\n")
    r = promote(cfg(project), "cpu", target="github")
    doc = yamltext.load(r.path.read_text())
    assert doc["jobs"]["train"]["runs-on"] == "ubuntu-latest"
    assert "--gpus" not in r.path.read_text()


# ------------------------------------------------------------------ multi-node through the CLI


def test_cli_writes_each_kubeflow_target_and_checks_it(project: Path, capsys):
    (project / "devloop.toml").write_text(TOML.replace('needs = ["prepare"]\n',
                                                       'needs = ["prepare"]\nnodes = 2\ngpus = 8\n'))
    git(project, "commit", "-q", "-am", "two nodes")
    for target, suffix in (("pytorchjob", "pytorchjob.yaml"), ("trainjob", "trainjob.yaml"),
                           ("argo", "argo.yaml")):
        assert cli_main(["promote", "--profile", "k8s-gpu", "--target", target, "--commit"]) == 0
        out = capsys.readouterr()
        assert f"wrote pipelines/mnist.{suffix}" in out.out
        assert "stage train: 2 nodes, 8 GPUs per node" in out.out
        assert cli_main(["promote", "--check", "--target", target]) == 0, capsys.readouterr()
    assert "kind: PyTorchJob" in (project / "pipelines" / "mnist.argo.yaml").read_text()
    # no --target: [promote].targets (argo) and every other file that exists
    assert [r.target for r in check(cfg(project))] == ["argo", "pytorchjob", "trainjob"]
    assert cli_main(["promote", "--check"]) == 0


def test_a_clone_without_the_pinned_commit_cannot_pass_and_says_how_to_fix(project: Path, tmp_path: Path,
                                                                           capsys, monkeypatch):
    promote_many(cfg(project), "k8s-gpu", ["argo"], commit=True)
    (project / "notes.md").write_text("later\n")
    git(project, "commit", "-q", "-am", "later")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{project}", str(clone))
    git(clone, "remote", "set-url", "origin", "https://github.com/acme/mnist.git")  # as in CI
    monkeypatch.chdir(clone)
    [res] = check(cfg(clone), targets=["argo"])
    assert not res.ok and "this clone does not have" in res.problems[0]
    assert "fetch-depth: 0" in res.fix and "promote --commit" not in res.fix
    capsys.readouterr()
    assert cli_main(["promote", "--check", "--target", "argo"]) == 1
    err = capsys.readouterr().err
    assert "git fetch --unshallow" in err and "promote --commit" not in err


def test_github_names_the_multi_node_stage_in_devloop_toml(project: Path):
    (project / "devloop.toml").write_text(TOML.replace('needs = ["prepare"]\n',
                                                       'needs = ["prepare"]\nnodes = 2\n'))
    with pytest.raises(PromoteError) as info:
        promote(cfg(project), "k8s-gpu", target="github")
    assert "devloop.toml:10: field 'nodes'" in str(info.value)
