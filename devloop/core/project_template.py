"""The files `devloop init` writes: a commented devloop.toml and four example profiles.

Kept as text (not generated from the dataclasses) so the comments read like documentation.
tests/unit/test_init_command.py checks that every file loads, and that the repository's own
profiles/ folder holds exactly these profiles.
"""

from __future__ import annotations

from pathlib import Path

DEVLOOP_TOML = """\
# devloop.toml -- where devloop finds your project's settings.
# Every key is optional; a commented value shows the default.
# `devloop config` prints what devloop resolved; `devloop config --profile NAME` adds a profile.

[project]
name = {name}
# The file `devloop up` / `watch` / `run` use when none is given on the command line.
{entry}
# The profile (profiles/NAME.yaml) used when --profile is not given. "local" is built in.
profile = "local"

[sync]
# Remote folder the project is synced into (default: the profile's workdir).
# dest = "/workspace"
# Extra ignore patterns (gitignore syntax), on top of .gitignore and .devloopignore.
exclude = ["data/", "*.ckpt", "*.pt", "wandb/", ".venv/", "__pycache__/"]
# Wait this long after the last save before syncing, in milliseconds.
# debounce_ms = 50

[run]
# What a save reruns in a '# %%' file:
#   "linear"   the first changed cell and every cell after it
#   "reactive" the changed cells, plus the cells that read names they define
# rerun = "linear"
# Interpreter for the kernel, on every profile that sets no `python:` of its own
# (default: python3; the local profile: the Python that runs devloop).
# python = "python3"

[run.env]
# Environment variables for your code, on every profile (values are strings).
# PYTHONHASHSEED = "0"

[gpu]
# How often the GPU gauges sample, in milliseconds.
# interval_ms = 1000

[ui]
# Log lines kept per cell in the app.
# scrollback = 10000

[session]
# Stop a session nobody is attached to and that runs nothing after this long ("30m", "90s",
# "1d"; "0" = never). A profile may set its own `idle_stop:`.
# idle_stop = "2h"

# Stages: what `devloop promote` turns into pipeline steps (an Argo DAG).
# Uncomment and adapt; `needs` names earlier stages, `outputs` are paths the next stages read.
#
# [[stage]]
# name = "prepare"
# run = "python prepare.py"
# outputs = ["data/processed/"]
#
# [[stage]]
# name = "train"
# run = "python train.py --epochs 10"
# needs = ["prepare"]
# outputs = ["checkpoints/"]
# gpus = 1          # per node; a stage without gpus inherits the profile's (gpus = 0: none)
# nodes = 1         # > 1: torchrun on that many machines (Kubeflow PyTorchJob / TrainJob)
# cpu = "8"
# memory = "32Gi"
# [stage.env]
# WANDB_MODE = "offline"

[promote]
# What `devloop promote` writes: "argo", "github", "pytorchjob", "trainjob" (the last two:
# the stages with nodes > 1). GitHub GPU jobs need a self-hosted runner: a table
# [promote.github] with runs_on = ["self-hosted", "gpu"] (or runs_on: in the profile).
# targets = ["argo"]
# out = "pipelines"
# name = {name}
"""

LOCAL_YAML = """\
# Profile "local": run on this machine, in the project folder itself.
# It is also built into devloop; this file only overrides it.
# Try the loop here first:  devloop up --profile local
# `devloop promote` needs a container image, which a local profile does not have: promote
# with a container profile (devloop promote --profile k8s-gpu, or docker-gpu).
kind: local

# Environment variables for your code (values are strings).
env: {}

# Runs before the first cell, and again whenever a dependency file changes
# (requirements*.txt, pyproject.toml, uv.lock, environment.yml).
# setup: pip install -r requirements.txt

# Interpreter for the kernel (default: the Python that runs devloop).
# python: .venv/bin/python

# Copy the project into this folder and run there instead of in place.
# workdir: /tmp/devloop-work
"""

DOCKER_GPU_YAML = """\
# Profile "docker-gpu": a container on this machine's Docker engine (or the one at
# docker_host), with the GPUs passed through (needs the NVIDIA Container Toolkit).
# Use it: devloop up --profile docker-gpu
kind: docker

# The image your pipeline runs: match production here. Or build one (see `build`).
image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime
# For `devloop promote` the image is pinned by digest: run `devloop snapshot` (then docker
# push the image), or write the image as name@sha256:... above.
# build:
#   context: .
#   dockerfile: Dockerfile
#   args: {PYTHON_VERSION: "3.11"}

# "all", a count (2), or device ids ([0, 1]).
# A pipeline asks for a count, not "all": for `devloop promote` set gpus = N on each
# [[stage]] in devloop.toml (or a count here).
gpus: all
# PyTorch DataLoader workers share memory through /dev/shm; Docker's default is 64 MB.
shm_size: 8Gi
# cpu: "8"
# memory: 32Gi

# Where the project is synced inside the container, and where cells run.
workdir: /workspace

# Runs before the first cell and whenever a dependency file changes.
setup: if [ -f requirements.txt ]; then pip install -r requirements.txt; fi

env:
  PYTHONUNBUFFERED: "1"

# Extra mounts, "SOURCE:/path/in/container[:ro]".
# volumes:
#   - ~/datasets:/data:ro
#   - ~/.cache/huggingface:/root/.cache/huggingface

# network: host
# user: "1000:1000"
# docker_host: ssh://me@gpu-box          # another Docker engine
# keep: false                            # keep the container after devloop stops
# snapshot_on_stop: false                # `docker commit` the container when it stops
"""

SSH_GPU_YAML = """\
# Profile "ssh-gpu": a GPU machine you reach over SSH.
# Host keys are verified against known_hosts; an unknown host is refused with its fingerprint
# (trust it with `devloop trust ssh-gpu`). ~/.ssh/config applies (HostName, User, Port,
# IdentityFile, ProxyJump).
# Use it: devloop up --profile ssh-gpu
# `devloop promote` needs a container image: uncomment the docker: block below with the image
# pinned by digest (name@sha256:...), or promote with k8s-gpu or docker-gpu.
kind: ssh

host: gpu-box.example.com
# port: 22
# user: ubuntu
# identity_file: ~/.ssh/id_ed25519
# known_hosts: ~/.ssh/known_hosts

# Where the project is synced on that machine, and where cells run.
workdir: ~/devloop/project
# Interpreter on that machine.
python: python3
setup: if [ -f requirements.txt ]; then python3 -m pip install --user -r requirements.txt; fi

# gpus: [0]            # sets CUDA_VISIBLE_DEVICES

# Run inside a container on that machine instead (same keys as a docker profile):
# docker:
#   image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime
#   gpus: all
#   shm_size: 8Gi
#   workdir: /workspace
#   docker_host: unix:///run/user/1000/docker.sock   # only if not the host's default engine
# devloop reaches that container over this same SSH connection (it runs `docker system
# dial-stdio` there), so the docker CLI must be installed on the host and usable by the SSH user.
"""

K8S_GPU_YAML = """\
# Profile "k8s-gpu": a pod on a Kubernetes cluster, with GPUs from the NVIDIA device plugin.
# Uses your kubeconfig (KUBECONFIG or ~/.kube/config).
# Use it: devloop up --profile k8s-gpu
kind: kubernetes

# The cluster must be able to pull this image (see image_pull_secrets).
# For `devloop promote` write it pinned by digest, name@sha256:... (a tag can move under a
# committed pipeline; `docker inspect --format '{{index .RepoDigests 0}}' IMAGE` shows it).
image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime
# context: my-cluster       # kubeconfig context (default: the current one)
namespace: default

# Requests and limits for the pod (nvidia.com/gpu for gpus).
gpus: 1
cpu: "8"
memory: 32Gi
shm_size: 8Gi

workdir: /workspace
setup: if [ -f requirements.txt ]; then pip install -r requirements.txt; fi

# Most GPU node pools are tainted; tolerate the taint so the pod can land there.
tolerations:
  - key: nvidia.com/gpu
    operator: Exists
    effect: NoSchedule
# node_selector:
#   nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB

# Secrets are referenced, never copied into the pod spec or a pipeline.
# image_pull_secrets: [regcred]
# env_from_secrets:
#   - name: WANDB_API_KEY
#     secret: wandb
#     key: api-key
# service_account: devloop

# Persistent volume claims to mount.
# volumes:
#   - claim: datasets
#     mount_path: /data
#     read_only: true

# keep: false               # keep the pod after devloop stops
# runs_on: [self-hosted, gpu]   # GitHub runner labels for `devloop promote --target github`
#                               # (GPU stages need a self-hosted runner: hosted ones have no GPU)
"""

PROFILES: dict[str, str] = {
    "local.yaml": LOCAL_YAML,
    "docker-gpu.yaml": DOCKER_GPU_YAML,
    "ssh-gpu.yaml": SSH_GPU_YAML,
    "k8s-gpu.yaml": K8S_GPU_YAML,
}


def toml_string(text: str) -> str:
    """`text` as a TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def devloop_toml(project_name: str, entry: str | None = None) -> str:
    """The commented devloop.toml for a project called `project_name`; `entry` set when given
    (else shown commented), so `devloop up` with no file runs it."""
    line = f"entry = {toml_string(entry)}" if entry else '# entry = "train.py"'
    return DEVLOOP_TOML.replace("{name}", toml_string(project_name)).replace("{entry}", line)


NOT_ENTRIES = ("setup.py", "conftest.py", "noxfile.py", "manage.py")


def python_files(folder: Path) -> list[str]:
    """The Python files at the top of `folder` that could be the one to run (not tests, not
    packaging, not private modules), sorted."""
    names = []
    for path in sorted(folder.glob("*.py")):
        name = path.name
        if name in NOT_ENTRIES or name.startswith(("_", "test_")) or name.endswith("_test.py"):
            continue
        if path.is_file():
            names.append(name)
    return names


def obvious_entry(folder: Path) -> str | None:
    """The project's one obvious file to run: the only Python file at its top, or the only one
    with `# %%` cells; None when there is no such file or several."""
    names = python_files(folder)
    if len(names) == 1:
        return names[0]
    with_cells = []
    for name in names:
        try:
            text = (folder / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(line.startswith("# %%") for line in text.splitlines()):
            with_cells.append(name)
    return with_cells[0] if len(with_cells) == 1 else None


def project_files(project_name: str, entry: str | None = None) -> dict[str, str]:
    """Relative path -> text of every file `devloop init` writes."""
    files = {"devloop.toml": devloop_toml(project_name, entry)}
    files.update({f"profiles/{name}": text for name, text in PROFILES.items()})
    return files
