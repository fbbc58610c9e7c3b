"""Promote as one call: config + profile -> pinned Pipeline -> YAML file(s), optionally committed.

`promote()` is what `devloop promote` and the app's `p` key call; `check()` is `--check`.
The pure parts live in model/argo/github/check; this module does the I/O (git, files).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from devloop import __version__
from devloop.core.promote import argo, github, yamltext
from devloop.core.promote.check import drift
from devloop.core.promote.model import (CodeRef, Pipeline, PromoteError, Provenance, StageSpec,
                                        TargetSpec, build_pipeline)
from devloop.core.promote.provenance import (PinnedImage, commit_files, git_state, is_pinned,
                                             pin_image)
from devloop.core.promote.validate import argo_problems, github_problems

TARGETS = ("argo", "github")


@dataclass(frozen=True)
class PromoteResult:
    path: Path
    run_id: str
    committed: bool
    warnings: tuple[str, ...] = ()
    commit: str = ""  # the new commit's sha when committed
    target: str = "argo"
    paths: tuple[Path, ...] = field(default=())  # every file written (several targets)


@dataclass(frozen=True)
class CheckResult:
    path: Path
    target: str
    diff: str  # "" when the committed file matches
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.diff


def _config_file(config: Any) -> str:
    f = getattr(config, "file", None)
    return str(f) if f else str(Path(config.root) / "devloop.toml")


def _target_spec(profile: Any) -> TargetSpec:
    source = getattr(profile, "source", "") or ""
    file = source if source and not source.startswith("<") else f"profiles/{profile.name}.yaml"
    return TargetSpec(
        name=profile.name, file=file, image=profile.image or "", gpus=profile.gpus,
        cpu=profile.cpu, memory=profile.memory, node_selector=dict(profile.node_selector or {}),
        tolerations=tuple(profile.tolerations or ()), env=dict(profile.env or {}),
        env_from_secrets=profile.env_from_secrets, image_pull_secrets=tuple(profile.image_pull_secrets or ()),
        runs_on=profile.runs_on, service_account=profile.service_account or "",
        workdir=profile.workdir or "",
    )


def _stage_specs(config: Any) -> list[StageSpec]:
    return [StageSpec(name=s.name, run=s.run, needs=tuple(s.needs), outputs=tuple(s.outputs),
                      gpus=s.gpus, cpu=s.cpu, memory=s.memory, env=dict(s.env or {}), line=s.line)
            for s in config.stages]


def pipeline_name(config: Any, name: str | None) -> str:
    return name or config.promote.name or config.project.name


def output_path(config: Any, target: str, name: str, out: str | None) -> Path:
    """argo: `<out>/<name>.argo.yaml` (out defaults to [promote].out); github:
    `.github/workflows/<name>.yml` unless --out is given."""
    root = Path(config.root)
    if target == "github":
        base = Path(out) if out else root / ".github" / "workflows"
        path = base / f"{name}.yml"
    else:
        base = Path(out or config.promote.out)
        path = base / f"{name}.argo.yaml"
    return path if path.is_absolute() else root / path


def build(config: Any, profile_name: str | None, *, name: str | None = None,
          allow_unpinned: bool = False, allow_dirty: bool = True,
          ignore: Sequence[Path] = (), image_fallback: str = "") -> tuple[Pipeline, list[str], Any]:
    """The Pipeline for the current project state; (pipeline, warnings, git state).

    `image_fallback` (used by --check, where snapshots are not committed) stands in when no
    pinned image can be found here."""
    root = Path(config.root)
    profile = config.profile(profile_name)
    target = _target_spec(profile)
    cfile = _config_file(config)
    warnings: list[str] = []
    state = git_state(root, ignore=ignore)
    if state.dirty_files and not allow_dirty:
        shown = ", ".join(state.dirty_files[:5]) + (" ..." if len(state.dirty_files) > 5 else "")
        raise PromoteError(f"tracked files have uncommitted changes: {shown}", file=str(state.toplevel),
                           hint="commit them first, or pass --allow-dirty (records dirty=true and a hash of the diff)")
    try:
        pinned = pin_image(root, profile.name, target.image, target.file, allow_unpinned=allow_unpinned)
    except PromoteError:
        if not image_fallback:
            raise
        pinned = PinnedImage(image_fallback, image_fallback.split("@", 1)[1] if is_pinned(image_fallback) else "",
                             "committed")
        warnings.append("no snapshot or pinned image here: compared with the committed file's image")
    if pinned.warning:
        warnings.append(pinned.warning)
    if state.remote_url:
        code = CodeRef(commit=state.commit, repo_url=state.remote_url, dirty=bool(state.dirty_files),
                       diff_sha256=state.diff_sha256)
    elif pinned.source == "snapshot":
        code = CodeRef(commit=state.commit, dirty=bool(state.dirty_files), diff_sha256=state.diff_sha256)
        warnings.append("no git remote: the code comes from the snapshot image's workdir")
    elif pinned.source == "committed":
        code = CodeRef(commit=state.commit)
    else:
        raise PromoteError("the code cannot be pinned: no git remote, and the image is not a "
                           "devloop snapshot that holds the code", file=str(state.toplevel),
                           hint="add a remote (git remote add origin URL) or run `devloop snapshot`")
    if state.dirty_files:
        warnings.append(f"uncommitted changes in {len(state.dirty_files)} tracked file(s): "
                        f"recorded dirty=true, diff sha256 {state.diff_sha256[:12]}")
    prov = Provenance(
        run_id=str(uuid.uuid4()), git_commit=state.commit, dirty=bool(state.dirty_files),
        diff_sha256=state.diff_sha256, image_digest=pinned.digest, profile=profile.name,
        devloop_version=__version__,
        time=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    )
    pipeline = build_pipeline(
        name=pipeline_name(config, name), stages=_stage_specs(config),
        entry=config.project.entry or "", target=target, run_env=dict(config.run.env or {}),
        image=pinned.ref, code=code, provenance=prov, root=root, config_file=cfile)
    return pipeline, warnings, state


def render(pipeline: Pipeline, target: str, path: Path, profile_file: str = "") -> tuple[str, dict]:
    """(YAML text, document) for one target, after devloop's own checks."""
    if target == "argo":
        doc = argo.to_workflow(pipeline)
        problems = argo_problems(doc)
        header = argo.HEADER.format(path=path.name)
    elif target == "github":
        try:
            doc = github.to_workflow(pipeline)
        except PromoteError as exc:
            if not exc.file:
                exc.file = profile_file
            raise
        problems = github_problems(doc)
        header = github.HEADER
    else:
        raise PromoteError(f"unknown promote target {target!r}", field="target",
                           hint=f"use one of: {', '.join(TARGETS)}")
    if problems:  # a devloop bug, not the user's: say so plainly
        raise PromoteError("generated pipeline failed devloop's checks: " + "; ".join(problems),
                           hint="please report this as a devloop bug")
    return yamltext.dump(doc, header=header), doc


def promote_many(config: Any, profile_name: str | None = None, targets: Sequence[str] | None = None,
                 *, name: str | None = None, out: str | None = None, commit: bool = False,
                 allow_dirty: bool = False, allow_unpinned: bool = False) -> list[PromoteResult]:
    """Write one file per target (one shared run id); with `commit`, one git commit for all."""
    targets = list(targets or config.promote.targets or ("argo",))
    pname = pipeline_name(config, name)
    paths = [output_path(config, t, pname, out) for t in targets]
    pipeline, warnings, state = build(config, profile_name, name=name, allow_unpinned=allow_unpinned,
                                      allow_dirty=allow_dirty or not commit, ignore=paths)
    profile_file = _target_spec(config.profile(profile_name)).file
    texts = [render(pipeline, t, p, profile_file)[0] for t, p in zip(targets, paths)]
    for path, text in zip(paths, texts):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    sha = ""
    if commit:
        pv = pipeline.provenance
        message = (f"devloop promote: {pipeline.name} ({', '.join(targets)})\n\n"
                   f"run id: {pv.run_id}\nprofile: {pv.profile}\nimage: {pipeline.image}\n"
                   f"code: {pv.git_commit}{' (dirty, diff sha256 ' + pv.diff_sha256 + ')' if pv.dirty else ''}\n")
        sha = commit_files(state.toplevel, paths, message)
    return [PromoteResult(path=p, run_id=pipeline.provenance.run_id, committed=commit,
                          warnings=tuple(warnings), commit=sha, target=t, paths=tuple(paths))
            for t, p in zip(targets, paths)]


def promote(config: Any, profile_name: str | None = None, target: str | None = None,
            name: str | None = None, out: str | None = None, commit: bool = False,
            allow_dirty: bool = False, allow_unpinned: bool = False) -> PromoteResult:
    """One target (default: the first of [promote].targets): what the app's `p` key calls."""
    chosen = target or (config.promote.targets or ("argo",))[0]
    return promote_many(config, profile_name, [chosen], name=name, out=out, commit=commit,
                        allow_dirty=allow_dirty, allow_unpinned=allow_unpinned)[0]


def _committed_image(text: str, target: str) -> str:
    try:
        doc = yamltext.load(text)
        if target == "argo":
            for t in doc["spec"]["templates"]:
                body = t.get("container") or t.get("script")
                if body:
                    return str(body["image"])
        else:
            for job in doc["jobs"].values():
                return str(job["container"]["image"])
    except Exception:
        return ""
    return ""


def check(config: Any, profile_name: str | None = None, targets: Sequence[str] | None = None,
          *, name: str | None = None, out: str | None = None,
          allow_unpinned: bool = False) -> list[CheckResult]:
    """Regenerate each target's pipeline and diff its substance with the file on disk."""
    targets = list(targets or config.promote.targets or ("argo",))
    pname = pipeline_name(config, name)
    results = []
    for t in targets:
        path = output_path(config, t, pname, out)
        if not path.is_file():
            results.append(CheckResult(path, t, f"--- {path}\n+++ (missing: run `devloop promote "
                                                f"--commit` to create it)\n"))
            continue
        text = path.read_text(encoding="utf-8")
        pipeline, warnings, _ = build(config, profile_name, name=name, allow_unpinned=allow_unpinned,
                                      ignore=[path], image_fallback=_committed_image(text, t))
        _, doc = render(pipeline, t, path)
        rel = path.relative_to(Path(config.root)) if path.is_relative_to(Path(config.root)) else path
        results.append(CheckResult(path, t, drift(text, doc, str(rel)), tuple(warnings)))
    return results
