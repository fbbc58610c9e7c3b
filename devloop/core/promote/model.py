"""The Pipeline model: what a promoted setup is, independent of Argo or GitHub.

`build_pipeline()` turns the project's stages and the chosen profile (plain values, so the core is
testable without config files) into a frozen `Pipeline`; the emitters (`argo.py`, `github.py`)
only translate it. Everything a user can get wrong is checked here and raised as a
`PromoteError` that names the file and the field to fix.

How a stage runs inside the pipeline's container (which holds the pinned image, the code at the
pinned commit and Python, but not devloop):

- `run = "train.py"` (a file): `python train.py` -- a percent-format file runs top to bottom.
- `run = "train.py:3-5"` / `"train.py:3"` (cells of a file, 1-based, counting code cells only;
  code before the first `# %%` marker is cell 1 when there is any): the cells' code is extracted
  at promote time and written into the pipeline as an inline Python script, so the pipeline
  shows exactly what runs and `promote --check` notices when those cells change.
- anything else (`"python -m pkg.train --epochs 3"`, `"bash prep.sh"`): a shell command,
  run with `sh -c`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from devloop.core.promote.secrets import SecretRef, check_inline_env, parse_secret_refs


class PromoteError(Exception):
    """A promote input the user must fix. `str()` is one line: where, which field, what, the fix."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None,
                 field: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        where = self.file or ""
        if where and self.line:
            where += f":{self.line}"
        head = f"{where}: " if where else ""
        fld = f"field '{self.field}': " if self.field else ""
        fix = f" -- fix: {self.hint}" if self.hint else ""
        return f"{head}{fld}{self.message}{fix}"


# ---------------------------------------------------------------------------------------------
# plain-value inputs (what config.py's Stage and Profile carry)


@dataclass(frozen=True)
class StageSpec:
    """One `[[stage]]` as written in devloop.toml."""

    name: str
    run: str
    needs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    gpus: Any = None
    cpu: Any = None
    memory: Any = None
    env: Mapping[str, str] = field(default_factory=dict)
    line: int | None = None
    nodes: int = 1  # machines the stage spans; gpus is per node


@dataclass(frozen=True)
class TargetSpec:
    """The profile fields a pipeline uses (config.Profile carries these and more)."""

    name: str
    file: str  # the profile file, for error messages
    image: str = ""
    gpus: Any = None
    cpu: Any = None
    memory: Any = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    env_from_secrets: Any = None
    image_pull_secrets: tuple[str, ...] = ()
    runs_on: Any = None
    service_account: str = ""
    workdir: str = ""
    kind: str = ""  # the profile's kind (local, docker, ssh, kubernetes): advice depends on it
    shm_size: Any = None  # /dev/shm size (a pipeline pod gets it as a Memory emptyDir)
    runs_on_field: str = "runs_on"  # where runs_on came from, for errors ("[promote.github] runs_on")
    runs_on_file: str = ""
    trainjob_runtime: str = "torch-distributed"


# ---------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class Resources:
    """Kubernetes-style quantities, already strings (`"1"`, `"4"`, `"16Gi"`); "" when unset."""

    gpus: str = ""  # per node
    cpu: str = ""
    memory: str = ""
    gpus_from: str = ""  # "stage" | "profile" | "" (none): promote prints where a GPU came from


@dataclass(frozen=True)
class Step:
    """A stage as it runs in the pipeline: either `command` (argv) or `script` (Python source)."""

    name: str  # DNS-1123 label
    stage: str  # the name as written in devloop.toml
    run: str
    command: tuple[str, ...] = ()
    script: str = ""
    needs: tuple[str, ...] = ()  # step names
    outputs: tuple[str, ...] = ()  # paths relative to the workdir
    resources: Resources = Resources()
    env: tuple[tuple[str, str], ...] = ()
    secret_env: tuple[SecretRef, ...] = ()
    secret_env_from: tuple[str, ...] = ()  # whole secrets as env (Argo envFrom)
    file: str = ""  # the user's file this step runs (the script, or a module's file)
    cells: tuple[int, int] | None = None
    nodes: int = 1
    line: int | None = None  # the [[stage]] line in devloop.toml
    module: str = ""  # `python -m MODULE ...`: the module (torchrun runs it with -m)
    args: tuple[str, ...] = ()  # arguments after the script / module


@dataclass(frozen=True)
class CodeRef:
    """Where the code comes from: a git repository at a commit, or baked into the image."""

    commit: str
    repo_url: str = ""  # "" means: the code is in the (snapshot) image
    dirty: bool = False
    diff_sha256: str = ""


@dataclass(frozen=True)
class Provenance:
    run_id: str
    git_commit: str
    dirty: bool
    diff_sha256: str
    image_digest: str
    profile: str
    devloop_version: str
    time: str


@dataclass(frozen=True)
class Pipeline:
    name: str  # DNS-1123 label
    image: str  # pinned reference, `name@sha256:...` (or an allowed unpinned tag)
    workdir: str
    code: CodeRef
    steps: tuple[Step, ...]
    provenance: Provenance
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = ""
    runs_on: tuple[str, ...] | str = "ubuntu-latest"
    runs_on_set: bool = False  # runs_on came from the profile or [promote.github], not the default
    runs_on_where: str = ""  # "profiles/x.yaml field 'runs_on'": for errors
    shm_size: str = ""  # Kubernetes quantity for /dev/shm ("" = the runtime's default)
    trainjob_runtime: str = "torch-distributed"
    profile_file: str = ""  # for errors about what the profile asks for
    config_file: str = ""  # devloop.toml, for errors about a stage


# ---------------------------------------------------------------------------------------------
# names and quantities

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_WORKDIR = "/workspace"


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS_LABEL.match(name))


def dns_name(raw: str, *, what: str, file: str, line: int | None = None, field: str = "name") -> str:
    """`raw` lowercased with `_`, `.` and spaces as `-`; an error when still not a DNS-1123 label."""
    name = re.sub(r"[_.\s]+", "-", raw.strip().lower())
    if not is_dns_label(name):
        raise PromoteError(
            f"{what} {raw!r} is not a valid Kubernetes name (DNS-1123: lowercase letters, digits "
            f"and '-', starting and ending with a letter or digit, at most 63 characters)",
            file=file, line=line, field=field, hint=f"rename it, e.g. {_suggest(raw)!r}")
    return name


def _suggest(raw: str) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:63].strip("-")
    return s or "main"


_QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_DOCKER_MEM = {"b": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}


def quantity(value: Any, *, fld: str, file: str, line: int | None = None, memory: bool = False) -> str:
    """A Kubernetes quantity as a string; Docker-style memory (`16g`) becomes `16Gi`."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        raise PromoteError(f"expected a quantity, got {value!r}", file=file, line=line, field=fld,
                           hint='write it as a string, e.g. "4" or "16Gi"')
    text = str(value).strip()
    if memory:
        m = re.match(r"^([0-9]+(?:\.[0-9]+)?)([bkmgt])$", text)
        if m:
            text = m.group(1) + _DOCKER_MEM[m.group(2)]
    if not _QUANTITY.match(text):
        example = '"16Gi"' if memory else '"4" or "500m"'
        raise PromoteError(f"{value!r} is not a Kubernetes quantity", file=file, line=line,
                           field=fld, hint=f"use a quantity such as {example}")
    return text


def gpu_count(value: Any, *, fld: str, file: str, line: int | None = None) -> str:
    """How many GPUs a pod asks for: an int, a numeric string, or a device list (its length)."""
    if value is None or value == "" or value == 0:
        return ""
    if isinstance(value, bool):
        raise PromoteError(f"expected a GPU count, got {value!r}", file=file, line=line, field=fld,
                           hint="set gpus: 1 (a number)")
    if isinstance(value, int):
        if value < 0:
            raise PromoteError(f"negative GPU count {value}", file=file, line=line, field=fld,
                               hint="set gpus: 1 (a number)")
        return str(value)
    if isinstance(value, (tuple, list)):
        return str(len(value)) if value else ""
    text = str(value).strip()
    if text.isdigit():
        return "" if int(text) == 0 else str(int(text))
    if "," in text and all(p.strip().isdigit() for p in text.split(",")):
        return str(len(text.split(",")))
    where = "gpus = N on the [[stage]] in devloop.toml" if file.endswith(".toml") else \
        f"gpus: N in {file}, or gpus = N on the [[stage]] in devloop.toml"
    raise PromoteError(
        f"{value!r} says which GPUs to use on one machine, but a pipeline pod asks for a count",
        file=file, line=line, field=fld,
        hint=f"set {where} (N = the GPUs the job needs; `devloop gpu` shows what the machine has)")


# ---------------------------------------------------------------------------------------------
# stage commands

_CELL_RANGE = re.compile(r"^(?P<file>[^\s:]+\.py):(?P<a>[0-9]+)(?:-(?P<b>[0-9]+))?$")
_MARKER = re.compile(r"^#\s*%%(?P<rest>.*)$")


def split_code_cells(text: str) -> list[tuple[int, str]]:
    """Code cells of a percent-format file as (first line, source); markdown cells skipped."""
    cells: list[tuple[int, list[str], bool]] = []  # (marker line, lines, is_code)
    current: list[str] = []
    start, is_code = 1, True
    preamble = True
    for number, line in enumerate(text.splitlines(), start=1):
        m = _MARKER.match(line)
        if m:
            if not preamble or any(s.strip() and not s.lstrip().startswith("#") for s in current):
                cells.append((start, current, is_code))
            preamble = False
            start, current = number, [line]
            is_code = "[markdown]" not in m.group("rest") and "[md]" not in m.group("rest")
        else:
            current.append(line)
    if not preamble or any(s.strip() and not s.lstrip().startswith("#") for s in current):
        cells.append((start, current, is_code))
    return [(s, "\n".join(lines).rstrip() + "\n") for s, lines, code in cells if code]


def _stage_command(stage: StageSpec, root: Path | None, file: str) -> tuple[tuple[str, ...], str, str, tuple[int, int] | None]:
    """(argv, script, user file, cell range) for a stage's `run`."""
    run = stage.run.strip()
    if not run:
        raise PromoteError(f"stage {stage.name!r} has an empty run", file=file, line=stage.line,
                           field="run", hint='set run = "train.py" (a file, "train.py:2-4" for cells, or a command)')
    m = _CELL_RANGE.match(run)
    if m:
        a = int(m.group("a"))
        b = int(m.group("b") or a)
        rel = m.group("file")
        path = (root / rel) if root is not None else Path(rel)
        if not path.is_file():
            raise PromoteError(f"stage {stage.name!r} runs {rel!r}, which does not exist", file=file,
                               line=stage.line, field="run", hint="fix the file name in run")
        cells = split_code_cells(path.read_text(encoding="utf-8"))
        if not (1 <= a <= b <= len(cells)):
            raise PromoteError(
                f"stage {stage.name!r}: cells {a}-{b} of {rel} do not exist ({rel} has "
                f"{len(cells)} code cells, numbered from 1)", file=file, line=stage.line,
                field="run", hint=f'use a range within 1-{len(cells)}, e.g. "{rel}:1-{len(cells)}"')
        chosen = cells[a - 1:b]
        header = (f"# devloop: cells {a}-{b} of {rel} (lines {chosen[0][0]}-"
                  f"{chosen[-1][0] + chosen[-1][1].count(chr(10)) - 1}), extracted by promote\n")
        return (("python",), header + "\n".join(src for _, src in chosen), rel, (a, b))
    words = shlex.split(run)
    if len(words) == 1 and words[0].endswith(".py"):
        rel = words[0]
        if root is not None and not (root / rel).is_file():
            raise PromoteError(f"stage {stage.name!r} runs {rel!r}, which does not exist", file=file,
                               line=stage.line, field="run", hint="fix the file name in run")
        return (("python", rel), "", rel, None)
    if len(words) > 1 and words[0].endswith(".py") and root is not None and (root / words[0]).is_file():
        return (("python", *words), "", words[0], None)
    return (("sh", "-c", run), "", "", None)


def _python_entry(argv: tuple[str, ...], root: Path | None) -> tuple[str, str, tuple[str, ...]]:
    """(script, module, args) when a stage's command runs Python code torchrun can launch:
    `python FILE ARGS` or `python -m MODULE ARGS` (also written inside `sh -c`); else ("", "", ())."""
    words = list(argv)
    if words[:2] == ["sh", "-c"]:
        try:
            words = shlex.split(words[2])
        except ValueError:
            return "", "", ()
    if not words or words[0] not in ("python", "python3"):
        return "", "", ()
    rest = words[1:]
    if len(rest) >= 2 and rest[0] == "-m":
        return "", rest[1], tuple(rest[2:])
    if rest and rest[0].endswith(".py"):
        return rest[0], "", tuple(rest[1:])
    return "", "", ()


def module_file(module: str, root: Path | None) -> str:
    """The project-relative file of a local module (`pkg.train` -> pkg/train.py), else ""."""
    if root is None or not module:
        return ""
    base = Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__main__.py", base / "__init__.py"):
        if (root / cand).is_file():
            return cand.as_posix()
    return ""


# ---------------------------------------------------------------------------------------------
# building


def _merge_env(*layers: Mapping[str, str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for layer in layers:
        for k, v in (layer or {}).items():
            env[str(k)] = str(v)
    return env


def build_pipeline(
    *,
    name: str,
    stages: Sequence[StageSpec],
    entry: str,
    target: TargetSpec,
    run_env: Mapping[str, str] | None,
    image: str,
    code: CodeRef,
    provenance: Provenance,
    root: Path | None,
    config_file: str = "devloop.toml",
) -> Pipeline:
    """The pipeline for these stages on this target; raises PromoteError naming what to fix.

    With no stages, one stage named after the entry file runs it headless.
    """
    pname = dns_name(name, what="pipeline name", file=config_file, field="promote.name")
    if not stages:
        if not entry:
            raise PromoteError("no [[stage]] and no entry file to run", file=config_file,
                               field="project.entry", hint='set [project] entry = "train.py" or add a [[stage]]')
        stages = [StageSpec(name=Path(entry).stem or "main", run=entry)]

    secret_refs, whole_secrets = parse_secret_refs(target.env_from_secrets, file=target.file)
    base_env = _merge_env(run_env, target.env)
    check_inline_env(run_env or {}, file=config_file, field_prefix="run.env")
    check_inline_env(target.env or {}, file=target.file, field_prefix="env")

    by_stage: dict[str, str] = {}
    for st in stages:
        step_name = dns_name(st.name, what="stage name", file=config_file, line=st.line)
        if step_name in by_stage.values():
            raise PromoteError(f"two stages are both named {step_name!r} (after lowercasing and "
                               f"'_' -> '-')", file=config_file, line=st.line, field="name",
                               hint="give each [[stage]] a distinct name")
        by_stage[st.name] = step_name

    steps: list[Step] = []
    for st in stages:
        for dep in st.needs:
            if dep not in by_stage:
                raise PromoteError(f"stage {st.name!r} needs {dep!r}, which is not a stage",
                                   file=config_file, line=st.line, field="needs",
                                   hint=f"use one of: {', '.join(sorted(by_stage))}")
            if dep == st.name:
                raise PromoteError(f"stage {st.name!r} needs itself", file=config_file,
                                   line=st.line, field="needs", hint="remove it from needs")
        for out in st.outputs:
            if out.startswith("/") or ".." in Path(out).parts or not out.strip():
                raise PromoteError(f"output {out!r} of stage {st.name!r} must be a path inside the "
                                   f"project", file=config_file, line=st.line, field="outputs",
                                   hint='use a relative path such as "out/model.pt"')
        check_inline_env(st.env or {}, file=config_file, line=st.line, field_prefix="env")
        argv, script, user_file, cells = _stage_command(st, root, config_file)
        nodes = int(st.nodes or 1)
        py_file, module, args = _python_entry(argv, root)
        if not user_file and module:
            user_file = module_file(module, root)
        if nodes < 1:
            raise PromoteError(f"stage {st.name!r} has nodes = {nodes}", file=config_file,
                               line=st.line, field="nodes", hint="set nodes = 1 or more")
        if nodes > 1 and not (py_file or module):
            why = ("its cells are inlined into the pipeline" if cells else
                   "torchrun launches a Python script or module, not a shell command")
            raise PromoteError(
                f"stage {st.name!r} spans {nodes} nodes but runs {st.run!r}: {why}",
                file=config_file, line=st.line, field="run",
                hint='run a script ("train.py", "train.py --epochs 3") or a module '
                     '("python -m pkg.train") on a multi-node stage')
        gpus = st.gpus if st.gpus is not None else target.gpus
        gfile, gline = (config_file, st.line) if st.gpus is not None else (target.file, None)
        gcount = gpu_count(gpus, fld="gpus", file=gfile, line=gline)
        res = Resources(
            gpus=gcount,
            gpus_from=("" if not gcount else "stage" if st.gpus is not None else "profile"),
            cpu=quantity(st.cpu if st.cpu is not None else target.cpu, fld="cpu",
                         file=config_file if st.cpu is not None else target.file,
                         line=st.line if st.cpu is not None else None),
            memory=quantity(st.memory if st.memory is not None else target.memory, fld="memory",
                            file=config_file if st.memory is not None else target.file,
                            line=st.line if st.memory is not None else None, memory=True),
        )
        env = _merge_env(base_env, st.env)
        for ref in secret_refs:
            env.pop(ref.env, None)
        steps.append(Step(
            name=by_stage[st.name], stage=st.name, run=st.run, command=argv, script=script,
            needs=tuple(by_stage[d] for d in st.needs), outputs=tuple(st.outputs),
            resources=res, env=tuple(sorted(env.items())), secret_env=secret_refs,
            secret_env_from=whole_secrets,
            file=user_file, cells=cells, nodes=nodes, module=module, args=args, line=st.line,
        ))
    _check_acyclic(steps, config_file)
    _check_output_names(steps, config_file)

    if not image:
        raise PromoteError("no image to run the pipeline in", file=target.file, field="image",
                           hint=image_hint(target.kind, target.file))
    runs_on = target.runs_on if target.runs_on else "ubuntu-latest"
    if isinstance(runs_on, (list, tuple)):
        runs_on = tuple(str(r) for r in runs_on)
    shm = quantity(target.shm_size, fld="shm_size", file=target.file, memory=True)
    return Pipeline(
        name=pname,
        image=image,
        workdir=target.workdir or DEFAULT_WORKDIR,
        code=code,
        steps=tuple(steps),
        provenance=provenance,
        node_selector=tuple(sorted((str(k), str(v)) for k, v in (target.node_selector or {}).items())),
        tolerations=tuple(_camel_keys(t) for t in (target.tolerations or ())),
        image_pull_secrets=tuple(target.image_pull_secrets or ()),
        service_account=target.service_account or "",
        runs_on=runs_on,
        runs_on_set=bool(target.runs_on),
        runs_on_where=f"{target.runs_on_file or target.file} field '{target.runs_on_field}'",
        shm_size=shm,
        trainjob_runtime=target.trainjob_runtime or "torch-distributed",
        profile_file=target.file,
        config_file=config_file,
    )


def image_hint(kind: str, profile_file: str) -> str:
    """How to get a pinned image for a profile of this kind: advice a user can follow as
    written (`devloop snapshot` takes only docker profiles; local and plain ssh profiles have
    no `image:` key, so they are pointed at a container profile)."""
    digest = " (`docker inspect --format '{{index .RepoDigests 0}}' IMAGE` shows the digest)"
    if kind == "docker":
        return (f"run `devloop snapshot` and push the image, or pin `image: name@sha256:...` in "
                f"{profile_file}")
    if kind == "ssh+docker":
        return f"pin `image: name@sha256:...` in the docker: block of {profile_file}" + digest
    if kind in ("local", "ssh"):
        return ("a pipeline runs in a container image, and this profile runs on a machine, not "
                "in an image: promote a container profile (devloop promote --profile docker-gpu "
                "or k8s-gpu)" + (f", or add a docker: block with image: name@sha256:... to "
                                 f"{profile_file}" if kind == "ssh" else ""))
    return f"pin `image: name@sha256:...` in {profile_file}" + digest


def _camel_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Profile YAML keys (`toleration_seconds`) as Kubernetes spells them (`tolerationSeconds`)."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), str(k)): v for k, v in mapping.items()}


def _check_acyclic(steps: Iterable[Step], file: str) -> None:
    graph = {s.name: s.needs for s in steps}
    stage_of = {s.name: s.stage for s in steps}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                raise PromoteError(
                    "stages depend on each other in a cycle: "
                    + " -> ".join(stage_of[n] for n in cycle), file=file, field="needs",
                    hint="remove one of these needs")
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])


def artifact_name(step: str, path: str) -> str:
    """Argo artifact / GitHub artifact name for an output path of a step."""
    return f"{step}-" + (re.sub(r"[^a-zA-Z0-9]+", "-", path).strip("-").lower() or "out")


def _check_output_names(steps: Sequence[Step], file: str) -> None:
    for s in steps:
        seen: dict[str, str] = {}
        for out in s.outputs:
            an = artifact_name(s.name, out)
            if an in seen:
                raise PromoteError(f"outputs {seen[an]!r} and {out!r} of stage {s.stage!r} map to "
                                   f"the same artifact name {an!r}", file=file, field="outputs",
                                   hint="rename one of the paths")
            seen[an] = out
