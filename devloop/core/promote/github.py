"""Pipeline -> GitHub Actions workflow (a plain dict, keys in a stable order).

One job per stage, `needs` as in devloop.toml, each job running in the pinned image
(`container:`) on the profile's `runs-on` (or `[promote.github] runs_on`). A job checks the
code out at the pinned commit, downloads the outputs of the stages it needs, runs the stage with
what the pinned image has -- `python FILE` (a percent file is a Python script), the extracted
cells as a `shell: python` step, or the shell command -- then uploads its outputs.
The workflow never installs devloop from a package index: the name `devloop` there belongs to
another project, and the image already holds everything the stage needs.

A GPU stage needs a runner with GPUs: GitHub-hosted labels (ubuntu-latest, ...) have none, so
promote refuses them and asks for a self-hosted label. Third-party actions are pinned by commit
SHA, the release tag in a comment.

Artifact paths: upload-artifact roots an artifact at the common ancestor of its paths, so each
upload also lists a marker file at the workspace root; downloading into `.` then restores the
outputs at the paths the next stage expects.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from devloop.core.promote.model import Pipeline, PromoteError, Step

# commit SHAs of the release tags (checked against the actions' repositories)
ACTION_TAGS = {
    "actions/checkout@11d5960a326750d5838078e36cf38b85af677262": "v4.4.0",
    "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02": "v4.6.2",
    "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093": "v4.3.0",
}
CHECKOUT, UPLOAD, DOWNLOAD = ACTION_TAGS
ROOT_MARKER = ".devloop-artifact-root"
HOSTED = re.compile(r"^(ubuntu|windows|macos)-[-a-z0-9.]+$")


def is_hosted(label: str) -> bool:
    """A GitHub-hosted runner label (no GPU)."""
    return bool(HOSTED.match(label.strip().lower()))


def pin_comments(text: str) -> str:
    """The YAML text with each pinned action's release tag as a comment after it."""
    def tag(m: re.Match) -> str:
        t = ACTION_TAGS.get(m.group(2))
        return m.group(0) + (f" # {t}" if t else "")
    return re.sub(r"^(\s*(?:- )?uses: )(\S+)$", tag, text, flags=re.M)


def _docker_size(quantity: str) -> str:
    """A Kubernetes memory quantity as `docker --shm-size` reads it (16Gi -> 16g)."""
    m = re.match(r"^([0-9]+)([KMGT])i?$", quantity)
    return f"{m.group(1)}{m.group(2).lower()}" if m else quantity


def outputs_artifact(step: str) -> str:
    return f"{step}-outputs"


def stage_command(step: Step) -> str:
    """The shell line a job runs for this stage (with the image's own Python)."""
    if step.command[:2] == ("sh", "-c"):
        return step.command[2]
    return shlex.join(step.command)


def _check_runner(p: Pipeline) -> None:
    for s in p.steps:
        if s.nodes > 1:
            raise PromoteError(
                f"stage {s.stage!r} spans {s.nodes} nodes, and a GitHub Actions job runs on one "
                f"machine", file=p.config_file, line=s.line, field="nodes",
                hint="promote it with --target pytorchjob, trainjob or argo (Kubeflow), or set "
                     "nodes = 1")
    gpu = [s.stage for s in p.steps if s.resources.gpus]
    labels = list(p.runs_on) if isinstance(p.runs_on, tuple) else [p.runs_on]
    hosted = [lbl for lbl in labels if is_hosted(lbl)]
    if gpu and (not p.runs_on_set or hosted):
        what = (f"runs-on {', '.join(hosted)} is a GitHub-hosted runner" if p.runs_on_set
                else "no runs-on is set, and the default ubuntu-latest is a GitHub-hosted runner")
        raise PromoteError(
            f"stage(s) {', '.join(gpu)} need GPUs, but {what} (no GPU there)",
            file=p.runs_on_where.split(" field ")[0],
            field=(p.runs_on_where.split(" field ")[1:] or ["runs_on"])[0].strip("'"),
            hint="set runs_on to your self-hosted GPU runner's labels (profile `runs_on: "
                 "[self-hosted, gpu]`, or [promote.github] runs_on in devloop.toml), or "
                 "gpus = 0 on stages that need none")


def _job(p: Pipeline, step: Step, producers: dict[str, Step]) -> dict[str, Any]:
    job: dict[str, Any] = {"name": step.stage}
    if step.needs:
        job["needs"] = list(step.needs)
    job["runs-on"] = list(p.runs_on) if isinstance(p.runs_on, tuple) else p.runs_on
    container: dict[str, Any] = {"image": p.image}
    options = []
    if step.resources.gpus:
        options.append(f"--gpus {step.resources.gpus}")
    if p.shm_size:
        options.append(f"--shm-size {_docker_size(p.shm_size)}")
    if options:
        container["options"] = " ".join(options)
    job["container"] = container
    env: dict[str, str] = dict(step.env)
    for ref in step.secret_env:
        env[ref.env] = "${{ secrets.%s }}" % ref.env
    if env:
        job["env"] = env
    steps: list[dict[str, Any]] = []
    if p.code.repo_url:
        steps.append({"name": "Check out the pinned commit", "uses": CHECKOUT,
                      "with": {"ref": p.code.commit}})
    else:
        job["defaults"] = {"run": {"working-directory": p.workdir}}
    for dep in step.needs:
        if producers[dep].outputs:
            steps.append({"name": f"Outputs of {producers[dep].stage}", "uses": DOWNLOAD,
                          "with": {"name": outputs_artifact(dep), "path": "."}})
    command = "" if step.script else stage_command(step)
    if step.script:  # a cell range: the extracted cells, run by the image's python
        steps.append({"name": f"Run {step.stage}", "shell": "python", "run": step.script})
    else:
        steps.append({"name": f"Run {step.stage}", "run": command})
    if step.outputs:
        steps.append({"name": "Mark the artifact root", "run": f"touch {ROOT_MARKER}"})
        steps.append({"name": f"Upload outputs of {step.stage}", "uses": UPLOAD,
                      "with": {"name": outputs_artifact(step.name),
                               "path": "\n".join([ROOT_MARKER, *step.outputs]),
                               "if-no-files-found": "error", "include-hidden-files": True}})
    job["steps"] = steps
    return job


def to_workflow(p: Pipeline) -> dict[str, Any]:
    """The GitHub Actions workflow for `p`; provenance goes into `env` of the workflow."""
    producers = {s.name: s for s in p.steps}
    pv = p.provenance
    _check_runner(p)
    for s in p.steps:
        if s.secret_env_from:
            raise PromoteError(
                f"whole secrets as env ({', '.join(s.secret_env_from)}) cannot be expressed in "
                f"GitHub Actions", field="env_from_secrets",
                hint="list each variable as {name: ENV, secret: S, key: K} "
                     "(GitHub reads it from the repository secret ENV)")
    return {
        "name": p.name,
        "on": {"workflow_dispatch": None},
        "permissions": {"contents": "read"},
        "env": {
            "DEVLOOP_RUN_ID": pv.run_id,
            "DEVLOOP_GIT_COMMIT": pv.git_commit,
            "DEVLOOP_DIRTY": "true" if pv.dirty else "false",
            **({"DEVLOOP_DIFF_SHA256": pv.diff_sha256} if pv.diff_sha256 else {}),
            "DEVLOOP_IMAGE_DIGEST": pv.image_digest,
            "DEVLOOP_PROFILE": pv.profile,
            "DEVLOOP_VERSION": pv.devloop_version,
            "DEVLOOP_PROMOTED_AT": pv.time,
        },
        "jobs": {s.name: _job(p, s, producers) for s in p.steps},
    }


HEADER = ("Generated by `devloop promote` -- edit devloop.toml / the profile and promote again.\n"
          "`devloop promote --check` fails when this file no longer matches them.")
