"""Issue 16 item 5: each profile `devloop init` writes is promoted as written, or the error
says what it still needs -- and following that advice converges (no advice that another
command then refuses, such as `devloop snapshot` for a profile that cannot take snapshots)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from devloop.cli import main as cli_main
from devloop.core.config import load_config
from devloop.core.promote import PromoteError, promote

DIGEST_REF = "pytorch/pytorch@sha256:" + "ab" * 32


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def project(tmp_path: Path, monkeypatch, capsys) -> Path:
    for k, v in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                 "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "demo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/demo.git")
    assert cli_main(["init"]) == 0
    capsys.readouterr()
    (repo / "train.py").write_text("# %%\nprint('train')\n")
    with open(repo / "devloop.toml", "a") as fh:
        fh.write('\n[[stage]]\nname = "train"\nrun = "train.py"\n')
    # [[stage]] after [promote] would be read into it: move it before [promote]
    text = (repo / "devloop.toml").read_text()
    stage = '\n[[stage]]\nname = "train"\nrun = "train.py"\n'
    text = text.replace(stage, "").replace("[promote]", stage.strip() + "\n\n[promote]", 1)
    (repo / "devloop.toml").write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def attempt(repo: Path, profile: str) -> str:
    """"" when promote succeeds, else its one-line error."""
    try:
        promote(load_config(repo), profile, target="argo")
        return ""
    except PromoteError as exc:
        text = str(exc)
        assert "\n" not in text and "fix:" in text
        return text


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new, 1))


def test_local_points_at_a_container_profile_not_at_snapshot(project: Path):
    err = attempt(project, "local")
    assert "devloop snapshot" not in err  # snapshot refuses non-docker profiles
    assert "--profile docker-gpu" in err or "--profile k8s-gpu" in err
    assert "image: name@sha256" not in err  # a local profile has no image key to pin


def test_k8s_gpu_converges_by_pinning_the_image(project: Path):
    err = attempt(project, "k8s-gpu")
    assert "field 'image'" in err and "name@sha256:" in err and "devloop snapshot" not in err
    assert "pinned by digest" in (project / "profiles" / "k8s-gpu.yaml").read_text()
    edit(project, "profiles/k8s-gpu.yaml", "image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
         f"image: {DIGEST_REF}")
    assert attempt(project, "k8s-gpu") == ""


def test_docker_gpu_converges_to_a_gpu_count(project: Path):
    err = attempt(project, "docker-gpu")
    assert "devloop snapshot" in err  # a docker profile can take snapshots
    edit(project, "profiles/docker-gpu.yaml", "image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
         f"image: {DIGEST_REF}")
    err = attempt(project, "docker-gpu")
    assert "'all'" in err and "gpus = N on the [[stage]]" in err
    edit(project, "devloop.toml", 'run = "train.py"\n', 'run = "train.py"\ngpus = 1\n')
    assert attempt(project, "docker-gpu") == ""


def test_ssh_gpu_converges_through_its_docker_block(project: Path):
    err = attempt(project, "ssh-gpu")
    assert "devloop snapshot" not in err and "docker: block" in err
    path = project / "profiles" / "ssh-gpu.yaml"
    text = path.read_text()
    text = re.sub(r"^# (docker:)$", r"\1", text, flags=re.M)
    text = re.sub(r"^#(   (image|gpus|shm_size|workdir): .*)$", r"\1", text, flags=re.M)
    path.write_text(text.replace("image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
                                 f"image: {DIGEST_REF}"))
    err = attempt(project, "ssh-gpu")
    assert "gpus = N on the [[stage]]" in err  # the block says gpus: all
    edit(project, "devloop.toml", 'run = "train.py"\n', 'run = "train.py"\ngpus = 1\n')
    assert attempt(project, "ssh-gpu") == ""
    doc = (project / "pipelines" / "demo.argo.yaml").read_text()
    assert DIGEST_REF in doc and "sizeLimit: 8Gi" in doc and "workingDir: /workspace" in doc
