"""Promote as one call: config + profile -> pinned Pipeline -> YAML file(s), optionally committed.

`promote()` is what `devloop promote` and the app's `p` key call; `check()` is `--check`.
The pure parts live in model/argo/github/check; this module does the I/O (git, files).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from devloop import __version__
from devloop.core.promote import argo, github, kubeflow, yamltext
from devloop.core.promote.check import drift, kind_of, recorded
from devloop.core.promote.codefiles import stage_files
from devloop.core.promote.model import (CodeRef, Pipeline, PromoteError, Provenance, StageSpec,
                                        TargetSpec, build_pipeline, module_file)
from devloop.core.promote.provenance import (PinnedImage, changed_since, commit_files, git_state,
                                             has_commit, is_pinned, is_tracked, on_remote_branch,
                                             pin_image, untracked)
from devloop.core.promote.validate import argo_problems, github_problems, kubeflow_problems

TARGETS = ("argo", "github", "pytorchjob", "trainjob")
SUFFIX = {"argo": ".argo.yaml", "pytorchjob": ".pytorchjob.yaml", "trainjob": ".trainjob.yaml"}


@dataclass(frozen=True)
class PromoteResult:
    path: Path
    run_id: str
    committed: bool
    warnings: tuple[str, ...] = ()
    commit: str = ""  # the new commit's sha when committed
    target: str = "argo"
    paths: tuple[Path, ...] = field(default=())  # every file written (several targets)
    resources: tuple[str, ...] = ()  # one line per stage: what it asks for, and from where


@dataclass(frozen=True)
class CheckResult:
    path: Path
    target: str
    diff: str  # "" when the committed file matches
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # drift the diff cannot show (code after the pin, ...)
    fix: str = ""  # the command that brings the file up to date (with the recorded profile)

    @property
    def ok(self) -> bool:
        return not self.diff and not self.problems


def _config_file(config: Any) -> str:
    f = getattr(config, "file", None)
    return str(f) if f else str(Path(config.root) / "devloop.toml")


def _target_spec(profile: Any, config: Any = None) -> TargetSpec:
    source = getattr(profile, "source", "") or ""
    file = source if source and not source.startswith("<") else f"profiles/{profile.name}.yaml"
    pconf = getattr(config, "promote", None)
    gh = dict(getattr(pconf, "github", None) or {})
    tj = dict(getattr(pconf, "trainjob", None) or {})
    runs_on, rfield, rfile = profile.runs_on, "runs_on", file
    if not runs_on and gh.get("runs_on"):
        runs_on, rfield, rfile = gh["runs_on"], "promote.github.runs_on", _config_file(config)
    image, gpus, cpu, memory, shm, kind = (profile.image or "", profile.gpus, profile.cpu,
                                           profile.memory, profile.shm_size, profile.kind or "")
    box = dict(getattr(profile, "docker", None) or {})
    if kind == "ssh" and box:  # the container on that host is what a pipeline reproduces
        kind = "ssh+docker"
        image = str(box.get("image") or "")
        gpus = box.get("gpus", gpus)
        cpu, memory, shm = box.get("cpu", cpu), box.get("memory", memory), box.get("shm_size", shm)
    return TargetSpec(
        name=profile.name, file=file, image=image, gpus=gpus,
        cpu=cpu, memory=memory, node_selector=dict(profile.node_selector or {}),
        tolerations=tuple(profile.tolerations or ()), env=dict(profile.env or {}),
        env_from_secrets=profile.env_from_secrets, image_pull_secrets=tuple(profile.image_pull_secrets or ()),
        runs_on=runs_on, service_account=profile.service_account or "",
        workdir=str(box.get("workdir") or "") if box else (profile.workdir or ""),
        kind=kind, shm_size=shm,
        runs_on_field=rfield, runs_on_file=rfile,
        trainjob_runtime=str(tj.get("runtime") or "torch-distributed"),
    )


def _stage_specs(config: Any) -> list[StageSpec]:
    return [StageSpec(name=s.name, run=s.run, needs=tuple(s.needs), outputs=tuple(s.outputs),
                      gpus=s.gpus, cpu=s.cpu, memory=s.memory, env=dict(s.env or {}), line=s.line,
                      nodes=getattr(s, "nodes", 1) or 1)
            for s in config.stages]


def code_files(pipeline: Pipeline, root: Path) -> list[str]:
    """Project-relative files the pipeline's stages run: run files and their local imports."""
    entries = []
    for s in pipeline.steps:
        entries.append(s.file or module_file(s.module, root))
    return stage_files(root, entries)


def _top_relative(root: Path, top: Path, files: Sequence[str]) -> list[str]:
    out = []
    for f in files:
        try:
            out.append(str((root / f).resolve().relative_to(top.resolve())))
        except ValueError:
            continue
    return out


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
        path = base / f"{name}{SUFFIX.get(target, '.argo.yaml')}"
    return path if path.is_absolute() else root / path


def build(config: Any, profile_name: str | None, *, name: str | None = None,
          allow_unpinned: bool = False, allow_dirty: bool = True,
          ignore: Sequence[Path] = (), image_fallback: str = "", require_green: bool = False,
          cited_run: str | None = None) -> tuple[Pipeline, list[str], Any]:
    """The Pipeline for the current project state; (pipeline, warnings, git state).

    `image_fallback` (used by --check, where snapshots are not committed) stands in when no
    pinned image can be found here. The provenance's run id is the latest green run of this
    code, profile and image (promote/cite.py; "" and a warning when there is none, a
    PromoteError with `require_green`); `cited_run` given (--check: the file's own run id,
    provenance, not substance) is used as it is."""
    root = Path(config.root)
    profile = config.profile(profile_name)
    target = _target_spec(profile, config)
    cfile = _config_file(config)
    warnings: list[str] = []
    state = git_state(root, ignore=ignore)
    if state.dirty_files and not allow_dirty:
        shown = ", ".join(state.dirty_files[:5]) + (" ..." if len(state.dirty_files) > 5 else "")
        raise PromoteError(f"tracked files have uncommitted changes: {shown}", file=str(state.toplevel),
                           hint="commit them first, or pass --allow-dirty (records dirty=true and a hash of the diff)")
    try:
        pinned = pin_image(root, profile.name, target.image, target.file,
                           allow_unpinned=allow_unpinned, kind=target.kind)
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
    run_id = cited_run or ""
    if cited_run is None:
        from devloop.core.promote.cite import cite_green_run

        citation = cite_green_run(root, profile.name, state, pinned)
        if not citation and require_green:
            raise PromoteError(citation.reason.split(" -- fix: ")[0], file=str(root / ".devloop" / "runs.jsonl"),
                               hint=f"run it on this profile until it passes (devloop run -p {profile.name} "
                                    f"FILE), or promote without --require-green")
        if not citation:
            warnings.append(citation.reason)
        run_id = citation.run_id
    prov = Provenance(
        run_id=run_id, git_commit=state.commit, dirty=bool(state.dirty_files),
        diff_sha256=state.diff_sha256, image_digest=pinned.digest, profile=profile.name,
        devloop_version=__version__,
        time=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    )
    pipeline = build_pipeline(
        name=pipeline_name(config, name), stages=_stage_specs(config),
        entry=config.project.entry or "", target=target, run_env=dict(config.run.env or {}),
        image=pinned.ref, code=code, provenance=prov, root=root, config_file=cfile)
    if code.repo_url:
        files = _top_relative(root, state.toplevel, code_files(pipeline, root))
        missing = untracked(state.toplevel, files)
        if missing:
            warnings.append(f"stage file(s) not tracked by git: {', '.join(missing)} -- the "
                            f"pinned commit does not contain them, so the pipeline cannot run "
                            f"them: git add and commit them, then promote again")
        if on_remote_branch(state.toplevel, state.commit) is False:
            warnings.append(f"commit {state.commit[:12]} is on no remote branch (git branch -r "
                            f"--contains): the pipeline fetches it from {code.repo_url} -- push "
                            f"it first")
    return pipeline, warnings, state


def shown_path(path: Path, root: Path | None) -> str:
    """The path as a user types it from the project root (absolute when outside it)."""
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def render(pipeline: Pipeline, target: str, path: Path, profile_file: str = "",
           root: Path | None = None) -> tuple[str, dict]:
    """(YAML text, document) for one target, after devloop's own checks."""
    stages = "\n".join(argo.resource_lines(pipeline))
    if target == "argo":
        doc = argo.to_workflow(pipeline)
        problems = argo_problems(doc)
        header = argo.HEADER.format(path=shown_path(path, root)) + "\n" + stages
    elif target in ("pytorchjob", "trainjob"):
        try:
            doc = kubeflow.to_document(pipeline, target)
        except PromoteError as exc:
            if not exc.file:
                exc.file = profile_file if exc.field == "image_pull_secrets" else ""
            raise
        problems = kubeflow_problems(doc)
        header = kubeflow.HEADER.format(path=shown_path(path, root)) + "\n" + "\n".join(
            line for line, s in zip(argo.resource_lines(pipeline), pipeline.steps) if s.nodes > 1)
    elif target == "github":
        try:
            doc = github.to_workflow(pipeline)
        except PromoteError as exc:
            if not exc.file:
                exc.file = profile_file
            raise
        problems = github_problems(doc)
        header = github.HEADER + "\n" + stages
    else:
        raise PromoteError(f"unknown promote target {target!r}", field="target",
                           hint=f"use one of: {', '.join(TARGETS)}")
    if problems:  # a devloop bug, not the user's: say so plainly
        raise PromoteError("generated pipeline failed devloop's checks: " + "; ".join(problems),
                           hint="please report this as a devloop bug")
    text = yamltext.dump(doc, header=header)
    if target == "github":
        text = github.pin_comments(text)
    return text, doc


def _render_warnings(pipeline: Pipeline, target: str) -> list[str]:
    if target in ("pytorchjob", "trainjob"):
        single = [s.stage for s in pipeline.steps if s.nodes <= 1]
        if single:
            return [f"--target {target} writes only the multi-node stage(s); "
                    f"{', '.join(single)} (single-node) are not in it: --target argo writes "
                    f"the whole DAG"]
    return []


def promote_many(config: Any, profile_name: str | None = None, targets: Sequence[str] | None = None,
                 *, name: str | None = None, out: str | None = None, commit: bool = False,
                 allow_dirty: bool = False, allow_unpinned: bool = False,
                 require_green: bool = False) -> list[PromoteResult]:
    """Write one file per target (one shared run id: the green run it cites); with `commit`,
    one git commit for all; `require_green`: refuse when no green run of this code matches."""
    targets = list(targets or config.promote.targets or ("argo",))
    pname = pipeline_name(config, name)
    paths = [output_path(config, t, pname, out) for t in targets]
    pipeline, warnings, state = build(config, profile_name, name=name, allow_unpinned=allow_unpinned,
                                      allow_dirty=allow_dirty or not commit, ignore=paths,
                                      require_green=require_green)
    profile_file = _target_spec(config.profile(profile_name), config).file
    texts = [render(pipeline, t, p, profile_file, Path(config.root))[0]
             for t, p in zip(targets, paths)]
    for t in targets:
        warnings.extend(_render_warnings(pipeline, t))
    for path, text in zip(paths, texts):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    sha = ""
    if commit:
        pv = pipeline.provenance
        message = (f"devloop promote: {pipeline.name} ({', '.join(targets)})\n\n"
                   f"run id: {pv.run_id or 'none (no green run of this code on this profile)'}\n"
                   f"profile: {pv.profile}\nimage: {pipeline.image}\n"
                   f"code: {pv.git_commit}{' (dirty, diff sha256 ' + pv.diff_sha256 + ')' if pv.dirty else ''}\n")
        sha = commit_files(state.toplevel, paths, message)
    return [PromoteResult(path=p, run_id=pipeline.provenance.run_id, committed=commit,
                          warnings=tuple(warnings), commit=sha, target=t, paths=tuple(paths),
                          resources=tuple(argo.resource_lines(pipeline)))
            for t, p in zip(targets, paths)]


def promote(config: Any, profile_name: str | None = None, target: str | None = None,
            name: str | None = None, out: str | None = None, commit: bool = False,
            allow_dirty: bool = False, allow_unpinned: bool = False,
            require_green: bool = False) -> PromoteResult:
    """One target (default: the first of [promote].targets): what the app's `p` key calls."""
    chosen = target or (config.promote.targets or ("argo",))[0]
    return promote_many(config, profile_name, [chosen], name=name, out=out, commit=commit,
                        allow_dirty=allow_dirty, allow_unpinned=allow_unpinned,
                        require_green=require_green)[0]


def _committed_image(doc: Any) -> str:
    """The image a generated document runs ("" when it cannot be read)."""
    try:
        if doc.get("kind") == "List":
            return _committed_image(doc["items"][0])
        if doc.get("kind") == "PyTorchJob":
            spec = doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
            return str(spec["containers"][0]["image"])
        if doc.get("kind") == "TrainJob":
            return str(doc["spec"]["trainer"]["image"])
        if doc.get("kind") == "Workflow":
            for t in doc["spec"]["templates"]:
                body = t.get("container") or t.get("script")
                if body:
                    return str(body["image"])
                if t.get("resource"):
                    return _committed_image(yamltext.load(t["resource"]["manifest"]))
        elif "jobs" in doc:
            for job in doc["jobs"].values():
                return str(job["container"]["image"])
    except Exception:
        return ""
    return ""


def _fix_command(target: str, profile: str, name: str | None, out: str | None) -> str:
    parts = ["devloop promote --commit", f"--target {target}"]
    if profile:
        parts.append(f"--profile {profile}")
    if name:
        parts.append(f"--name {name}")
    if out:
        parts.append(f"--out {out}")
    return " ".join(parts)


def check(config: Any, profile_name: str | None = None, targets: Sequence[str] | None = None,
          *, name: str | None = None, out: str | None = None,
          allow_unpinned: bool = False) -> list[CheckResult]:
    """Compare each target's file on disk with what promote would write now.

    The file is re-rendered with the profile and target it records (`devloop.dev/profile`,
    its kind), never with the default profile; `profile_name`, when given, must match. Code
    drift counts: a stage's run file or a local module it imports that changed after the
    pinned commit fails the check, named. Without `targets`: [promote].targets, plus every
    other target whose file exists (a PyTorchJob promoted with --target is checked too)."""
    pname = pipeline_name(config, name)
    if not targets:
        targets = list(config.promote.targets or ("argo",))
        targets += [t for t in TARGETS
                    if t not in targets and output_path(config, t, pname, out).is_file()]
    targets = list(targets)
    root = Path(config.root)
    results = []
    for t in targets:
        path = output_path(config, t, pname, out)
        rel = shown_path(path, root)
        if not path.is_file():
            fix = _fix_command(t, profile_name or "", name, out)
            results.append(CheckResult(path, t, f"--- {rel}\n+++ (missing: run `{fix}` to "
                                                f"create it)\n", fix=fix))
            continue
        text = path.read_text(encoding="utf-8")
        try:
            on_disk = yamltext.load(text)
        except Exception:
            on_disk = None
        rec = recorded(on_disk)
        kind = kind_of(on_disk) or t
        profile = rec.get("profile") or ""
        fix = _fix_command(kind, profile or profile_name or "", name, out)
        if profile_name and profile and profile_name != profile:
            results.append(CheckResult(path, kind, "", problems=(
                f"{rel} was promoted with profile {profile!r}, not {profile_name!r}: --check "
                f"compares it with the profile it records",), fix=_fix_command(
                    kind, profile_name, name, out)))
            continue
        if profile and profile not in config.profile_names():
            results.append(CheckResult(path, kind, "", problems=(
                f"{rel} records profile {profile!r}, which this project no longer has",),
                fix=_fix_command(kind, "PROFILE", name, out)))
            continue
        pipeline, warnings, state = build(
            config, profile or profile_name, name=name, allow_unpinned=allow_unpinned,
            ignore=[path], image_fallback=_committed_image(on_disk or {}),
            cited_run=rec.get("run-id", ""))
        _, doc = render(pipeline, kind, path, root=root)
        notes = list(warnings)
        tracked = is_tracked(state.toplevel, path)
        if not tracked:
            notes.append(f"{rel} is not tracked by git: the comparison is with the file on disk")
        diff = drift(text, doc, rel, label="committed" if tracked else "on disk, not committed")
        problems = []
        pin = rec.get("git-commit", "")
        if pin and pipeline.code.repo_url:
            files = _top_relative(root, state.toplevel, code_files(pipeline, root))
            if not has_commit(state.toplevel, pin):
                problems.append(
                    f"{rel} pins commit {pin[:12]}, which this clone does not have, so code "
                    f"drift cannot be checked")
                if not diff:  # re-promoting would hide the question, not answer it
                    fix = ("git fetch --unshallow (in GitHub Actions: actions/checkout with "
                           "fetch-depth: 0), then check again")
            else:
                changed = changed_since(state.toplevel, pin, files)
                if changed:
                    problems.append(
                        f"{rel} pins commit {pin[:12]}, and the stage code changed since: "
                        f"{', '.join(changed)} -- the pipeline would run the old code")
        results.append(CheckResult(path, kind, diff, tuple(notes), tuple(problems), fix))
    return results
