"""devloop.toml + profiles/*.yaml -> frozen dataclasses.

Why this module is strict: a typo in a config file should fail at once with one line naming the
file, the line, the nearest valid key and a fix -- not silently run the wrong thing on a GPU box.

- `load_config(start)` finds `devloop.toml` upward from `start` (stopping at a folder holding
  `.git`, or the filesystem root). None found: defaults, root = start.
- `Config.profile(name)` loads `<root>/profiles/NAME.yaml` on demand (a broken profile you do not
  use never blocks you). `local` is built in; `profiles/local.yaml` may override it.
- Every mapping in the result is read-only (MappingProxyType), every list a tuple.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import yaml

from devloop.core import config_yaml

CONFIG_FILE = "devloop.toml"
PROFILES_DIR = "profiles"
PROFILE_KINDS = ("local", "docker", "ssh", "kubernetes")
RERUN_POLICIES = ("linear", "reactive")
PROMOTE_TARGETS = ("argo", "github", "pytorchjob", "trainjob")
IMAGE_MODES = ("auto", "kitty", "sixel", "halfblock", "off")  # [ui] images
BUILT_IN = "<built-in>"

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _no_entries() -> Mapping[str, Any]:
    return MappingProxyType({})




# --------------------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A config problem the user can fix. `str()` is one line:

    `FILE:LINE: MESSAGE (did you mean 'KEY'?) -- fix: HINT` (unknown parts left out).
    """

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.hint = hint
        self.suggestion = suggestion
        super().__init__(str(self))

    def __str__(self) -> str:
        text = ""
        if self.file is not None:
            text = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        text += self.message
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        if self.hint:
            text += f" -- fix: {self.hint}"
        return " ".join(text.split("\n"))


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid spelling of `word`, or None when nothing is close."""
    found = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


# ------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    entry: str | None = None  # the file `up` / `run` / `watch` use when none is given
    profile: str = "local"  # the profile used when none is given


@dataclass(frozen=True)
class SyncConfig:
    dest: str | None = None  # remote folder the project syncs into (None: the profile's workdir)
    exclude: tuple[str, ...] = ()  # gitignore-syntax patterns, on top of .gitignore/.devloopignore
    debounce_ms: int = 50
    pull: tuple[str, ...] = ()  # outputs pulled back after every pass (gitignore syntax)
    pull_max_mb: int = 100  # what one pull brings at most; the rest comes with the next

    @property
    def excluded(self) -> tuple[str, ...]:
        """What the sync (and the watcher) leave alone: `exclude` plus the pulled outputs, so
        a pulled file never syncs back nor starts a rerun."""
        return tuple(self.exclude or ()) + tuple(self.pull or ())


@dataclass(frozen=True)
class RunConfig:
    rerun: str = "linear"  # "linear" | "reactive"
    env: Mapping[str, str] = field(default_factory=_no_entries)
    python: str | None = None  # kernel interpreter where the profile sets none (a profile's wins)
    args: tuple[str, ...] = ()  # sys.argv[1:] of the file (`devloop run F -- ARGS` replaces them)
    launcher: str | None = None  # "torchrun": a script runs as N processes (core/launcher.py)
    nproc_per_node: int | str = "auto"  # processes under the launcher; "auto": the profile's GPUs


@dataclass(frozen=True)
class GpuConfig:
    interval_ms: int = 1000


@dataclass(frozen=True)
class UiConfig:
    scrollback: int = 10000
    metrics: tuple[str, ...] = ()  # names whose numbers in the output are charted (`loss=0.1`)
    images: str = "auto"  # inline images: auto | kitty | sixel | halfblock | off


@dataclass(frozen=True)
class SessionConfig:
    """`[session]`: how long a kernel session with nobody attached and no cell running lives."""

    idle_stop_s: float = 2 * 3600.0  # `idle_stop = "2h"`; 0 = never stop on idle


@dataclass(frozen=True)
class PortsConfig:
    """`[ports]`: local ports that reach ports in the target (devloop/core/ports/)."""

    forward: tuple[str, ...] = ()  # "6006", "18888:8888" (LOCAL:REMOTE)
    bind: str = "127.0.0.1"  # "0.0.0.0" opens the forwards to the network: an explicit opt-in


@dataclass(frozen=True)
class Stage:
    """One `[[stage]]`: what promote turns into a pipeline task."""

    name: str
    run: str
    needs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    gpus: str | int | None = None
    cpu: str | None = None
    memory: str | None = None
    env: Mapping[str, str] = field(default_factory=_no_entries)
    line: int | None = None  # line of the `[[stage]]` header in devloop.toml
    nodes: int = 1  # machines a stage spans (promote: > 1 is a PyTorchJob / TrainJob); gpus is per node


@dataclass(frozen=True)
class PromoteConfig:
    targets: tuple[str, ...] = ("argo",)
    out: str = "pipelines"
    name: str | None = None  # pipeline name (None: the project name)
    github: Mapping[str, Any] = field(default_factory=_no_entries)  # [promote.github] runs_on
    trainjob: Mapping[str, Any] = field(default_factory=_no_entries)  # [promote.trainjob] runtime


@dataclass(frozen=True)
class Profile:
    """Where code runs. One dataclass for every kind; keys that do not apply stay at defaults.

    `gpus` is normalised: an int is a count, "all" is every GPU, a tuple of strings names
    devices ("0", "1", "GPU-<uuid>"); None / 0 means none requested.
    `volumes`: docker -> "src:dst[:ro]" strings; kubernetes -> mappings {claim, mount_path,
    read_only}. `env_from_secrets`: strings (whole secret as env) or mappings {name, secret, key}.
    `env_from_secrets` may also be written as a mapping {ENV: "secret/key"}; it is read into
    the {name, secret, key} form. `workdir` on remote kinds is absolute or starts with "~".
    `docker` (ssh only): run inside a container on that host, same keys as a docker profile.
    """

    name: str
    kind: str = "local"
    source: str = BUILT_IN
    env: Mapping[str, str] = field(default_factory=_no_entries)
    setup: str | None = None
    workdir: str | None = None
    python: str | None = None
    gpus: str | int | tuple[str, ...] | None = None
    keep: bool = False
    image: str | None = None
    build: Mapping[str, Any] | None = None
    shm_size: str | None = None
    volumes: tuple[Any, ...] = ()
    network: str | None = None
    user: str | None = None
    docker_host: str | None = None
    cpu: str | None = None
    memory: str | None = None
    host: str | None = None
    port: int | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    docker: Mapping[str, Any] | None = None
    context: str | None = None
    namespace: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=_no_entries)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    env_from_secrets: tuple[Any, ...] = ()
    service_account: str | None = None
    runs_on: str | tuple[str, ...] | None = None  # GitHub runs-on label(s)
    snapshot_on_stop: bool = False
    idle_stop_s: float | None = None  # `idle_stop:` overrides [session].idle_stop; None: unset
    forward: tuple[str, ...] = ()  # `forward:` adds to [ports].forward (same local port: replaces)

    def to_dict(self, *, only_set: bool = False) -> dict[str, Any]:
        """JSON-able view; with only_set, just the keys that differ from the defaults."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if only_set and f.name not in ("name", "kind", "source") and value == default:
                continue
            out[f.name] = _plain(value)
        return out


@dataclass(frozen=True)
class Config:
    root: Path
    file: Path | None
    project: ProjectConfig
    sync: SyncConfig = SyncConfig()
    run: RunConfig = RunConfig()
    gpu: GpuConfig = GpuConfig()
    ui: UiConfig = UiConfig()
    session: SessionConfig = SessionConfig()
    ports: PortsConfig = PortsConfig()
    stages: tuple[Stage, ...] = ()
    promote: PromoteConfig = PromoteConfig()
    profile_line: int | None = field(default=None, repr=False, compare=False)  # [project].profile

    @property
    def profiles_dir(self) -> Path:
        return self.root / PROFILES_DIR

    def profile_names(self) -> list[str]:
        """`local` (built in) plus every profiles/NAME.yaml (or .yml), sorted."""
        names = {"local"}
        if self.profiles_dir.is_dir():
            for path in self.profiles_dir.iterdir():
                if path.suffix in (".yaml", ".yml") and path.is_file():
                    names.add(path.stem)
        return sorted(names)

    def profile(self, name: str | None = None) -> Profile:
        """Load a profile: None -> [project].profile -> "local". Read fresh on every call."""
        from_project = not name
        name = name or self.project.profile or "local"
        where = self.file or self.root
        line = self.profile_line if from_project else None
        if not _PROFILE_NAME.match(name):
            raise ConfigError(
                f"invalid profile name {name!r}" + ("" if from_project else " (from --profile)"),
                file=where if from_project else None,
                line=line,
                hint="profile names are file names in profiles/: letters, digits, '-', '_', '.'",
            )
        path = self._profile_path(name)
        if path is None:
            if name == "local":
                return Profile(name="local")
            available = self.profile_names()
            raise ConfigError(
                f"unknown profile {name!r}" + ("" if from_project else " (from -p/--profile)")
                + f"; available: {', '.join(available)}",
                file=where if from_project else None,
                line=line,
                suggestion=nearest(name, available),
                hint=f"create {PROFILES_DIR}/{name}.yaml (`devloop init` writes examples) "
                "or pick one of the available profiles",
            )
        return load_profile(path, name, root=self.root)

    def _profile_path(self, name: str) -> Path | None:
        for suffix in (".yaml", ".yml"):
            path = self.profiles_dir / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view for `devloop config --json`."""
        return {
            "root": str(self.root),
            "file": str(self.file) if self.file else None,
            "project": _plain(self.project),
            "sync": _plain(self.sync),
            "run": _plain(self.run),
            "gpu": _plain(self.gpu),
            "ui": _plain(self.ui),
            "session": _plain(self.session),
            "ports": _plain(self.ports),
            "stages": [_plain(s) for s in self.stages],
            "promote": _plain(self.promote),
        }


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        if isinstance(value, Profile):
            return value.to_dict()
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# ------------------------------------------------------------------------------- validation


@dataclass
class _Source:
    """One file being validated: turns a key path into a line number for errors."""

    file: Path
    lines: Mapping[tuple, int]
    default_line: int | None = None
    root: Path | None = None  # the project folder (a local workdir is checked against it)

    def line(self, path: tuple) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.default_line

    def error(self, path: tuple, message: str, *, hint: str,
              suggestion: str | None = None) -> ConfigError:
        """Every config error says how to fix it: `hint` is required."""
        return ConfigError(message, file=self.file, line=self.line(path), hint=hint,
                           suggestion=suggestion)


def _label(path: tuple) -> str:
    parts = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, Mapping):
        return "a table/mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


Validator = Callable[[_Source, tuple, Any], Any]


def _str(src: _Source, path: tuple, value: Any) -> str:
    if not isinstance(value, str):
        quoted = f'"{value}"' if isinstance(value, (int, float)) and not isinstance(value, bool) else '"..."'
        hint = f"quote it: {quoted}" if isinstance(path[-1], int) else f"quote it: {path[-1]} = {quoted}"
        raise src.error(path, f"'{_label(path)}' must be a string, not {_type_name(value)}", hint=hint)
    if "\0" in value:
        raise src.error(path, f"'{_label(path)}' contains a NUL character",
                        hint="remove the \\0 from the value")
    return value


def _nonempty_str(src: _Source, path: tuple, value: Any) -> str:
    text = _str(src, path, value)
    if not text.strip():
        raise src.error(path, f"'{_label(path)}' must not be empty",
                        hint=f"give {path[-1]} a value, or remove the key for the default")
    return text


def _int_between(minimum: int, maximum: int, example: int, unit: str = "") -> Validator:
    """A whole number in [minimum, maximum]: the upper bound keeps a value like 2**63-1 or a
    day of debounce from overflowing a C call or stalling a loop."""
    def check(src: _Source, path: tuple, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise src.error(path, f"'{_label(path)}' must be a whole number, not {_type_name(value)}",
                            hint=f"write e.g. {path[-1]} = {example}")
        if value < minimum:
            raise src.error(path, f"'{_label(path)}' must be at least {minimum}{unit}, not {value}",
                            hint=f"write e.g. {path[-1]} = {example}")
        if value > maximum:
            raise src.error(path, f"'{_label(path)}' must be at most {maximum}{unit}, not {value}",
                            hint=f"write e.g. {path[-1]} = {example}")
        return value
    return check


def _port(src: _Source, path: tuple, value: Any) -> int:
    port = _int_between(1, 2**31, 22)(src, path, value)
    if port > 65535:
        raise src.error(path, f"'{_label(path)}' must be a port number (1-65535), not {port}",
                        hint=f"write e.g. {path[-1]}: 22")
    return port


def _bool(src: _Source, path: tuple, value: Any) -> bool:
    if not isinstance(value, bool):
        raise src.error(path, f"'{_label(path)}' must be true or false, not {_type_name(value)}",
                        hint=f"write {path[-1]} = true or false (no quotes)")
    return value


def _choice(choices: tuple[str, ...]) -> Validator:
    def check(src: _Source, path: tuple, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise src.error(
                path,
                f"'{_label(path)}' must be one of {', '.join(choices)}, not {_type_name(value)}",
                suggestion=nearest(str(value), choices),
                hint=f"write one of: {', '.join(choices)}",
            )
        return value
    return check


def _list_of(item: Validator, *, allow_single: bool = False) -> Validator:
    def check(src: _Source, path: tuple, value: Any) -> tuple:
        if allow_single and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise src.error(path, f"'{_label(path)}' must be a list, not {_type_name(value)}",
                            hint=f'write {path[-1]} = ["..."]' if src.file.suffix == ".toml"
                            else f"write {path[-1]}: [...]")
        return tuple(item(src, path + (i,), v) for i, v in enumerate(value))
    return check


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$", re.ASCII)
# Linux refuses to start a process with one NAME=value over 128 KiB (MAX_ARG_STRLEN), and all
# of them share ARG_MAX (2 MiB by default): bounded here so the failure names the key.
ENV_VALUE_MAX = 128 * 1024 - 1
ENV_TOTAL_MAX = 512 * 1024


def _env(src: _Source, path: tuple, value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise src.error(path, f"'{_label(path)}' must be a table of NAME = value, not "
                        f"{_type_name(value)}", hint=f"write {_label(path)} as NAME: \"value\" pairs")
    out = {}
    total = 0
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise src.error(path + (key,), f"'{_label(path)}' has an invalid variable name {key!r}",
                            hint="use letters, digits and '_', not starting with a digit")
        where = path + (key,)
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise src.error(where, f"'{_label(where)}' must be a string, not "
                            f"{_type_name(val)}", hint='quote the value: "..."')
        text = val if isinstance(val, str) else str(val)
        if "\0" in text:
            raise src.error(where, f"'{_label(where)}' contains a NUL character, which an "
                            "environment variable cannot hold", hint="remove the \\0 from the value")
        size = len(key) + 1 + len(text.encode("utf-8", "surrogatepass"))
        if size > ENV_VALUE_MAX:
            raise src.error(where, f"'{_label(where)}' is {size} bytes; one environment variable "
                            f"may hold at most {ENV_VALUE_MAX}",
                            hint="pass big data in a file, and its path in the variable")
        total += size + 1
        if total > ENV_TOTAL_MAX:
            raise src.error(where, f"'{_label(path)}' holds more than {ENV_TOTAL_MAX} bytes",
                            hint="pass big data in a file, and its path in the variable")
        out[key] = text
    return MappingProxyType(out)


def _str_map(src: _Source, path: tuple, value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise src.error(path, f"'{_label(path)}' must be a mapping, not {_type_name(value)}",
                        hint=f"write {path[-1]} as key: \"value\" pairs")
    out = {}
    for key, val in value.items():
        where = path + (key,)
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise src.error(where, f"'{_label(where)}' must be a string, not "
                            f"{_type_name(val)}", hint='quote the value: "..."')
        out[str(key)] = _str(src, where, val if isinstance(val, str) else str(val))
    return MappingProxyType(out)


_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)(e[+-]?\d+|[KMGTPE]i|[mkMGTPE])?$", re.ASCII)
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("500m", "16Gi", "8G", "2") as a number (cores or bytes)."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    suffix = m.group(3) or ""
    if suffix.startswith("e"):
        return float(m.group(1) + suffix)
    return float(m.group(1)) * _SUFFIX[suffix]


def _quantity(example: str) -> Validator:
    def check(src: _Source, path: tuple, value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
                and math.isfinite(value):
            return str(value)
        if isinstance(value, str) and _QUANTITY.match(value.strip()):
            return value.strip()
        raise src.error(path, f"'{_label(path)}' must be a quantity like {example!r}, not "
                        f"{_type_name(value)}",
                        hint="use Kubernetes units: m (milli-cpu), Ki/Mi/Gi/Ti or k/M/G/T")
    return check


_DOCKER_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(?:([mgtMGTkK])[bB]|([mgt])|([bB]))$", re.ASCII)


def _memory(example: str) -> Validator:
    """A memory size: Kubernetes quantities ("16Gi", "8G"), plus Docker's "16g", "512m", "8GB",
    which are binary units and are rewritten to the Kubernetes form ("16Gi") here."""
    k8s = _quantity(example)

    def check(src: _Source, path: tuple, value: Any) -> str:
        if isinstance(value, str):
            m = _DOCKER_MEMORY.match(value.strip())
            if m:
                number, two_letter, one_letter, _bytes = m.groups()
                unit = (two_letter or one_letter or "").upper()
                return f"{number}{unit}i" if unit else number
        return k8s(src, path, value)
    return check


_GPU_ID = re.compile(r"^(\d+|(GPU|MIG)-[A-Za-z0-9/-]+)$", re.ASCII)
_GPU_COUNT_MAX = 4096  # more than any machine holds; bounds what a count can ask a runtime for


def _gpu_count(text: str) -> int | None:
    """An ASCII count ("2"), else None: str.isdigit() also accepts "²", which int() refuses."""
    return int(text) if text.isascii() and text.isdigit() else None
_GPUS_HINT = "use 'all', a count (gpus: 2) or device ids (gpus: [0, 1] or \"device=0,1\")"


def _gpus(src: _Source, path: tuple, value: Any) -> str | int | tuple[str, ...] | None:
    bad = src.error(path, f"'{_label(path)}' must be 'all', a count or a list of device ids, "
                    f"not {_type_name(value)}", hint=_GPUS_HINT)
    if value is None:
        return None
    if isinstance(value, bool):
        raise src.error(path, f"'{_label(path)}' must be 'all', a count or a list of device ids, "
                        f"not {_type_name(value)} (YAML reads yes/no/on/off as booleans)",
                        hint=_GPUS_HINT, suggestion="all" if value else None)
    if isinstance(value, int):
        if value < 0 or value > _GPU_COUNT_MAX:
            raise bad
        return value
    if isinstance(value, str):
        text = value.strip()
        if text == "all":
            return "all"
        count = _gpu_count(text)
        if count is not None:
            if count > _GPU_COUNT_MAX:
                raise bad
            return count
        if text.startswith("device="):
            text = text[len("device="):]
        ids = tuple(p.strip() for p in text.split(","))
        if ids and all(_GPU_ID.match(i) for i in ids):
            return ids
        raise src.error(path, f"'{_label(path)}' must be 'all', a count or a list of device ids, "
                        f"not {value!r}", hint=_GPUS_HINT, suggestion=nearest(text, ["all"]))
    if isinstance(value, list):
        ids = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (int, str)) \
                    or not _GPU_ID.match(str(item)):
                raise src.error(path + (i,), f"'{_label(path + (i,))}' must be a device index or "
                                f"GPU UUID, not {_type_name(item)}", hint=_GPUS_HINT)
            ids.append(str(item))
        return tuple(ids)
    raise bad


def _stage_gpus(src: _Source, path: tuple, value: Any) -> str | int | None:
    if isinstance(value, str) and value.strip() == "all":
        return "all"
    count = _gpu_count(value.strip()) if isinstance(value, str) else value
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= _GPU_COUNT_MAX:
        return count
    raise src.error(path, f"'{_label(path)}' must be a GPU count or 'all', not {_type_name(value)}",
                    hint="write gpus = 1")


def _abs_posix(src: _Source, path: tuple, value: Any) -> str:
    text = _nonempty_str(src, path, value)
    if not (text.startswith("/") or text.startswith("~")):
        raise src.error(path, f"'{_label(path)}' must be an absolute path on the target, not "
                        f"{text!r}", hint=f"write e.g. {path[-1]}: /workspace")
    return str(PurePosixPath(text)) if text.startswith("/") else text


def _table(
    src: _Source,
    path: tuple,
    value: Any,
    spec: Mapping[str, Validator],
    *,
    what: str,
    required: Iterable[str] = (),
    extra_hint: Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """Validate a mapping against `spec`; unknown keys name the nearest valid one."""
    if not isinstance(value, Mapping):
        raise src.error(path, f"'{_label(path) or what}' must be a table/mapping, not "
                        f"{_type_name(value)}",
                        hint=f"write {what} as keys with values"
                        + (f" ([{_label(path)}] in {CONFIG_FILE})" if src.file.suffix == ".toml"
                           and path and all(isinstance(p, str) for p in path) else ""))
    out: dict[str, Any] = {}
    for key, val in value.items():
        if key not in spec:
            hint = extra_hint(str(key)) if extra_hint else None
            raise src.error(
                path + (key,),
                f"unknown key '{key}' in {what}",
                suggestion=nearest(str(key), spec),
                hint=hint or f"valid keys: {', '.join(sorted(spec))}",
            )
        out[key] = spec[key](src, path + (key,), val)
    for key in required:
        if key not in value:
            raise src.error(path, f"{what} is missing '{key}'", hint=f"add {key} = ...")
    return out


# ----------------------------------------------------------------------------- devloop.toml


_EXCLUDE_PLAIN = re.compile(r"^!?[A-Za-z0-9_.*/@+=,:;%&()'$~ -]*[A-Za-z0-9_.*/@+=,:;%&()'$~-]"
                            r"[A-Za-z0-9_.*/@+=,:;%&()'$~ -]*$")


def _pull_rule(src: _Source, path: tuple, value: Any) -> str:
    """A pull rule: a gitignore pattern inside the workdir (`..` never matches there, so a rule
    reaching out of it would pull nothing, silently)."""
    text = _exclude_pattern(src, path, value)
    if ".." in text.lstrip("!").strip().strip("/").split("/"):
        raise src.error(path, f"'{_label(path)}' reaches outside the workdir: {text!r} (pull rules "
                        "match paths inside it, gitignore style)",
                        hint='name a folder or files under the workdir, e.g. "results/" or "figures/*.png"')
    return text


def _exclude_pattern(src: _Source, path: tuple, value: Any) -> str:
    """One gitignore pattern, checked here so a bad one (`!`, `[z-a]`, a trailing `\\`) is a
    config error, not a crash of the first scan. Plain patterns (no brackets or escapes) always
    compile: only the others pay for importing pathspec (~40 ms)."""
    text = _str(src, path, value)
    if "\n" in text or "\r" in text:
        raise src.error(path, f"'{_label(path)}' holds a line break",
                        hint="write one pattern per list item")
    if _EXCLUDE_PLAIN.match(text) or not text.strip() or text.lstrip().startswith("#"):
        return text
    import warnings

    import pathspec

    try:
        with warnings.catch_warnings():  # re's FutureWarning on "[[" is not the user's problem
            warnings.simplefilter("ignore")
            pathspec.GitIgnoreSpec.from_lines([text])
    except (ValueError, re.error, TypeError) as exc:
        reason = re.sub(r"\s+", " ", str(exc))[:120]
        raise src.error(path, f"'{_label(path)}' is not a valid gitignore pattern: {text!r} "
                        f"({reason})", hint="see `man gitignore`; escape a literal [ or ! with \\"
                        ) from None
    return text


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])", re.ASCII)
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
DURATION_MAX_S = 366 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in "2h", "30m", "90s", "1d", "1h30m" or "0"; ValueError otherwise."""
    text = str(text).strip()
    if text in ("0", "0s"):
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _duration(src: _Source, path: tuple, value: Any) -> float:
    hint = f'write e.g. {path[-1]} = "2h" (units d, h, m, s; "0" never stops)'
    if not isinstance(value, str):
        raise src.error(path, f"'{_label(path)}' must be a duration string like \"2h\", not "
                        f"{_type_name(value)}", hint=hint)
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise src.error(path, f"'{_label(path)}' must be a duration like \"2h\", \"30m\", "
                        f"\"90s\" or \"0\", not {value!r}", hint=hint) from None
    if seconds > DURATION_MAX_S:
        raise src.error(path, f"'{_label(path)}' must be at most 366 days, not {value!r}",
                        hint='write "0" to never stop on idle')
    return seconds


_PROJECT = {"name": _nonempty_str, "entry": _nonempty_str, "profile": _nonempty_str}
# debounce: at most 10 s (a day of debounce never reruns and holds SIGTERM with it)
_SYNC = {"dest": _nonempty_str, "exclude": _list_of(_exclude_pattern),
         "debounce_ms": _int_between(0, 10_000, 50, " ms"), "pull": _list_of(_pull_rule),
         "pull_max_mb": _int_between(1, 1_000_000, 100, " MB")}
_RUN = {"rerun": _choice(RERUN_POLICIES), "env": _env, "python": _nonempty_str, "args": _list_of(_str),
        "launcher": _choice(("torchrun",)),
        "nproc_per_node": lambda src, path, v: "auto" if v == "auto" else _int_between(1, 1024, 2)(
            src, path, v)}
_GPU = {"interval_ms": _int_between(50, 60_000, 1000, " ms")}
_UI = {"scrollback": _int_between(100, 10_000_000, 10000), "metrics": _list_of(_nonempty_str),
       "images": _choice(IMAGE_MODES)}
_SESSION = {"idle_stop": _duration}


def _forward_spec(src: _Source, path: tuple, value: Any) -> str:
    """A port forward: 6006, "6006" or "LOCAL:REMOTE" (devloop.core.ports.spec)."""
    from devloop.core.ports.spec import parse_spec

    try:
        return parse_spec(value).text
    except ValueError as exc:
        raise src.error(path, str(exc), hint='write e.g. "6006" or "18888:8888" (LOCAL:REMOTE)') from None


def _bind_address(src: _Source, path: tuple, value: Any) -> str:
    import ipaddress

    text = _nonempty_str(src, path, value)
    if text != "localhost":
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise src.error(path, f"'{_label(path)}' must be an IP address of this machine, not {text!r}",
                            hint='write bind = "127.0.0.1" (the default), or "0.0.0.0" to open the '
                                 "forwards to the network") from None
    return text


_PORTS = {"forward": _list_of(_forward_spec, allow_single=True), "bind": _bind_address}
_STAGE = {
    "name": _nonempty_str, "run": _nonempty_str, "needs": _list_of(_str, allow_single=True),
    "outputs": _list_of(_str, allow_single=True), "gpus": _stage_gpus,
    "cpu": _quantity("4"), "memory": _memory("16Gi"), "env": _env,
    "nodes": _int_between(1, 4096, 2),
}
_PROMOTE = {"targets": _list_of(_choice(PROMOTE_TARGETS), allow_single=True),
            "out": _nonempty_str, "name": _nonempty_str,
            # sub-tables of [promote]; validators looked up at call time (defined further down)
            "github": lambda src, path, v: MappingProxyType(_table(
                src, path, v, {"runs_on": _runs_on}, what="[promote.github]")),
            "trainjob": lambda src, path, v: MappingProxyType(_table(
                src, path, v, {"runtime": _nonempty_str}, what="[promote.trainjob]"))}
_TOP = ("project", "sync", "run", "gpu", "ui", "session", "ports", "stage", "promote")


def find_config_file(start: Path) -> Path | None:
    """devloop.toml in `start` or a parent; the search stops at a folder holding .git."""
    here = start.resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            return None
    return None


def load_config(start: Path, *, file: Path | None = None) -> Config:
    """The project config: `file` if given, else devloop.toml found upward from `start`."""
    start = Path(start)
    if file is not None:
        file = Path(file)
        if not file.is_file():
            raise ConfigError("config file not found", file=file,
                              hint="check the path, or run `devloop init` to create one")
        file = file.resolve()
    else:
        file = find_config_file(start)
    if file is None:
        root = start.resolve()
        if root.is_file():
            root = root.parent
        return Config(root=root, file=None, project=ProjectConfig(name=root.name))
    text = _read_text(file)
    try:
        config_yaml.check_bracket_runs(text)
        _check_dotted_keys(text)
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(file, text, exc) from None
    except config_yaml.YamlInputError as exc:
        raise ConfigError(exc.message, file=file, line=exc.line, hint=exc.hint) from None
    except RecursionError:
        raise ConfigError("values nested too deeply", file=file,
                          line=config_yaml.nesting_line(text),
                          hint="flatten it: a config needs a few levels") from None
    return _build_config(file, text, data)


# tomllib's time grows with the square of a dotted key's length (10,000 parts: 4 s)
_LONG_DOTTED_KEY = re.compile(
    r"^[ \t]*\[{0,2}[ \t]*(?:[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*')"
    r"(?:[ \t]*\.[ \t]*(?:[A-Za-z0-9_-]+|\"[^\"\n]*\"|'[^'\n]*')){%d,}" % config_yaml.MAX_DEPTH,
    re.M)


def _check_dotted_keys(text: str) -> None:
    found = _LONG_DOTTED_KEY.search(text)
    if found:
        raise config_yaml.YamlInputError(
            f"a dotted key with more than {config_yaml.MAX_DEPTH} parts",
            text.count("\n", 0, found.start()) + 1, "flatten it: a config needs a few levels")


MAX_FILE_BYTES = 1 << 20  # a config or profile is a few KiB; parsing 4 MB of YAML takes seconds


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path,
                          hint="check that the file exists and is readable") from None
    if len(raw) > MAX_FILE_BYTES:
        line = raw[:MAX_FILE_BYTES].count(b"\n") + 1
        raise ConfigError(f"the file is larger than {MAX_FILE_BYTES >> 20} MiB (from this line on)",
                          file=path, line=line,
                          hint="keep big values in files of their own and name their paths here")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("not valid UTF-8", file=path, line=line,
                          hint="save the file as UTF-8") from None


def _toml_error(file: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if m:
        line = int(m.group(1))
        message = message[: m.start()]
    else:
        line = max(1, len(text.splitlines()))
        message = re.sub(r"\s*\(at end of document\)$", "", message) + " at end of file"
    return ConfigError(f"invalid TOML: {message}", file=file, line=line,
                       hint="check quotes, brackets and `key = value` syntax on that line")


def _build_config(file: Path, text: str, data: Mapping[str, Any]) -> Config:
    src = _Source(file, _toml_lines(text), default_line=None)
    root = file.parent

    def top_hint(key: str) -> str | None:
        return f"sections: {', '.join('[[stage]]' if t == 'stage' else f'[{t}]' for t in _TOP)}"

    for key, value in data.items():
        if key not in _TOP:
            raise src.error((key,), f"unknown section '{key}' in {CONFIG_FILE}",
                            suggestion=nearest(key, _TOP), hint=top_hint(key) or "")

    project = _table(src, ("project",), data.get("project", {}), _PROJECT, what="[project]")
    sync = _table(src, ("sync",), data.get("sync", {}), _SYNC, what="[sync]")
    run = _table(src, ("run",), data.get("run", {}), _RUN, what="[run]")
    gpu = _table(src, ("gpu",), data.get("gpu", {}), _GPU, what="[gpu]")
    ui = _table(src, ("ui",), data.get("ui", {}), _UI, what="[ui]")
    session = _table(src, ("session",), data.get("session", {}), _SESSION, what="[session]")
    ports = _table(src, ("ports",), data.get("ports", {}), _PORTS, what="[ports]")
    promote = _table(src, ("promote",), data.get("promote", {}), _PROMOTE, what="[promote]")
    stages = _stages(src, data.get("stage", []))

    if "profile" in project and not _PROFILE_NAME.match(project["profile"]):
        raise src.error(("project", "profile"), f"invalid profile name {project['profile']!r}",
                        hint="a file name in profiles/ without .yaml")
    project.setdefault("name", root.name)
    return Config(
        root=root,
        file=file,
        project=ProjectConfig(**project),
        sync=SyncConfig(**sync),
        run=RunConfig(**run),
        gpu=GpuConfig(**gpu),
        ui=UiConfig(**ui),
        session=SessionConfig(**{"idle_stop_s": session["idle_stop"]} if session else {}),
        ports=PortsConfig(**ports),
        stages=stages,
        promote=PromoteConfig(**promote),
        profile_line=src.lines.get(("project", "profile")),
    )


def _stages(src: _Source, value: Any) -> tuple[Stage, ...]:
    if isinstance(value, Mapping):
        raise src.error(("stage",), "'stage' must be an array of tables",
                        hint="write [[stage]] (double brackets) for each stage")
    if not isinstance(value, list):
        raise src.error(("stage",), f"'stage' must be [[stage]] tables, not {_type_name(value)}",
                        hint="write [[stage]] (double brackets) for each stage")
    stages: list[Stage] = []
    for i, raw in enumerate(value):
        path = ("stage", i)
        fields_ = _table(src, path, raw, _STAGE, what="[[stage]]", required=("name", "run"))
        stages.append(Stage(**fields_, line=src.line(path)))
    names = [s.name for s in stages]
    first = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    for i, stage in enumerate(stages):
        if first[stage.name] != i:
            raise src.error(("stage", i, "name"), f"duplicate stage name {stage.name!r}",
                            hint="give every [[stage]] its own name")
        for j, need in enumerate(stage.needs):
            if need == stage.name:
                raise src.error(("stage", i, "needs"), f"stage {stage.name!r} needs itself",
                                hint="remove it from needs")
            if need not in first:
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise src.error(("stage", i, "needs"),
                                f"stage {stage.name!r} needs unknown stage {need!r}",
                                suggestion=nearest(need, names),
                                hint=f"name one of the stages: {shown}")
    cycle = _find_cycle({s.name: s.needs for s in stages})
    if cycle:
        i = first[cycle[0]]
        raise src.error(("stage", i, "needs"),
                        f"stages depend on each other in a cycle: {_short_cycle(cycle)}",
                        hint="remove one of these needs")
    return tuple(stages)


def _find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle of needs as [a, b, ..., a], else None. Iterative: a chain of thousands of
    stages must not exhaust Python's recursion limit."""
    state: dict[str, int] = {}
    for start in graph:
        if start in state:
            continue
        path: list[str] = [start]
        on_path = {start: 0}
        state[start] = 1
        todo = [iter(graph.get(start, ()))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
                continue
            if state.get(nxt) == 1:
                return path[on_path[nxt]:] + [nxt]
            if nxt not in state:
                state[nxt] = 1
                on_path[nxt] = len(path)
                path.append(nxt)
                todo.append(iter(graph.get(nxt, ())))
    return None


def _short_cycle(cycle: list[str]) -> str:
    """A cycle for one line: all of a short one, the ends of a long one."""
    if len(cycle) <= 8:
        return " -> ".join(cycle)
    return f"{' -> '.join(cycle[:4])} -> ... ({len(cycle) - 7} more) -> {' -> '.join(cycle[-3:])}"


_TOML_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def _toml_key_parts(text: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", text)
    return tuple(a or b or c for a, b, c in parts)


def _toml_lines(text: str) -> dict[tuple, int]:
    """Key path -> line, by scanning headers and `key =` lines (tomllib keeps no positions).

    Array-of-table paths carry the index: ("stage", 1, "gpus"). Keys in inline tables or inside
    multi-line values are not seen; lookups then fall back to the enclosing table's line.
    """
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[tuple, int] = {}
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if in_multiline:
            if raw.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        stripped = raw.strip()
        if stripped.startswith("[["):
            end = stripped.find("]]")
            parts = _toml_key_parts(stripped[2:end])
            counts[parts] = counts.get(parts, -1) + 1
            table = parts + (counts[parts],)
            lines.setdefault(parts, number)
            lines.setdefault(table, number)
            continue
        if stripped.startswith("["):
            end = stripped.find("]")
            parts = _toml_key_parts(stripped[1:end])
            # a [stage.env] sub-table belongs to the latest [[stage]]
            resolved: tuple = ()
            for part in parts:
                resolved += (part,)
                if resolved in counts:
                    resolved += (counts[resolved],)
            table = resolved
            lines.setdefault(table, number)
            continue
        m = _TOML_KEY.match(raw)
        if m:
            lines.setdefault(table + _toml_key_parts(m.group(1)), number)
            rest = raw[m.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


# ---------------------------------------------------------------------------- profiles/*.yaml


def _docker_build(src: _Source, path: tuple, value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        value = {"context": value}
    spec = {"context": _nonempty_str, "dockerfile": _nonempty_str, "args": _str_map}
    out = _table(src, path, value, spec, what="build")
    out.setdefault("context", ".")
    out.setdefault("dockerfile", "Dockerfile")
    out.setdefault("args", _EMPTY)
    return MappingProxyType(out)


def _docker_volume(src: _Source, path: tuple, value: Any) -> str:
    text = _nonempty_str(src, path, value)
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") or \
            (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise src.error(path, f"'{_label(path)}' must look like 'SOURCE:/container/path[:ro]', "
                        f"not {text!r}", hint="e.g. ~/datasets:/data:ro")
    return text


def _kube_volume(src: _Source, path: tuple, value: Any) -> Mapping[str, Any]:
    spec = {"claim": _nonempty_str, "mount_path": _abs_posix, "read_only": _bool}
    out = _table(src, path, value, spec, what="a kubernetes volume",
                 required=("claim", "mount_path"))
    out.setdefault("read_only", False)
    return MappingProxyType(out)


def _toleration(src: _Source, path: tuple, value: Any) -> Mapping[str, Any]:
    spec = {"key": _str, "operator": _choice(("Exists", "Equal")), "value": _str,
            "effect": _choice(("NoSchedule", "PreferNoSchedule", "NoExecute")),
            "toleration_seconds": _int_between(0, 10**9, 300)}
    return MappingProxyType(_table(src, path, value, spec, what="a toleration"))


def _env_from_secrets(src: _Source, path: tuple, value: Any) -> tuple[Any, ...]:
    """A list of secret names / {name, secret, key}; or a mapping {ENV_NAME: "secret/key"}."""
    if not isinstance(value, Mapping):
        return _list_of(_env_from_secret)(src, path, value)
    out = []
    for env_name, ref in value.items():
        where = path + (env_name,)
        if not isinstance(env_name, str) or not _ENV_NAME.match(env_name):
            raise src.error(where, f"invalid variable name {env_name!r} in env_from_secrets",
                            hint="use letters, digits and '_', not starting with a digit")
        if not isinstance(ref, str) or ref.count("/") != 1 or not all(ref.split("/")):
            raise src.error(where, f"'{_label(where)}' must be \"SECRET/KEY\", not "
                            f"{_type_name(ref)}", hint=f"write {env_name}: my-secret/key")
        secret, key = ref.split("/")
        out.append(MappingProxyType({"name": env_name, "secret": secret, "key": key}))
    return tuple(out)


def _runs_on(src: _Source, path: tuple, value: Any) -> str | tuple[str, ...]:
    if isinstance(value, list):
        return _list_of(_nonempty_str)(src, path, value)
    return _nonempty_str(src, path, value)


def _env_from_secret(src: _Source, path: tuple, value: Any) -> str | Mapping[str, str]:
    if isinstance(value, str):
        return _nonempty_str(src, path, value)
    spec = {"name": _nonempty_str, "secret": _nonempty_str, "key": _nonempty_str}
    out = _table(src, path, value, spec, what="env_from_secrets entry",
                 required=("name", "secret", "key"))
    if not _ENV_NAME.match(out["name"]):
        raise src.error(path + ("name",), f"invalid variable name {out['name']!r}",
                        hint="use letters, digits and '_', not starting with a digit")
    return MappingProxyType(out)


_COMMON = {
    "kind": _choice(PROFILE_KINDS), "env": _env, "setup": _nonempty_str, "python": _nonempty_str,
    "gpus": _gpus, "runs_on": _runs_on, "snapshot_on_stop": _bool, "idle_stop": _duration,
    "forward": _list_of(_forward_spec, allow_single=True),
}
_DOCKER_KEYS = {
    "workdir": _abs_posix, "keep": _bool, "image": _nonempty_str, "build": _docker_build,
    "shm_size": _memory("8Gi"), "volumes": _list_of(_docker_volume), "network": _nonempty_str,
    "user": _nonempty_str, "docker_host": _nonempty_str, "cpu": _quantity("8"),
    "memory": _memory("32Gi"),
}
# what a `docker:` block inside an ssh profile may hold: the container on that host
# (docker_host there is the engine's address on that host, e.g. a rootless unix socket)
_SSH_DOCKER_KEYS = _DOCKER_KEYS | {
    "env": _env, "gpus": _gpus, "setup": _nonempty_str, "python": _nonempty_str}


def _ssh_docker(src: _Source, path: tuple, value: Any) -> Mapping[str, Any]:
    out = _table(src, path, value, _SSH_DOCKER_KEYS, what="the ssh profile's docker block")
    if "image" not in out and "build" not in out:
        raise src.error(path, "the docker block needs 'image' or 'build'",
                        hint="add image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime")
    return MappingProxyType(out)


_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))
NAME_MAX = 255  # bytes in one path part (Linux, macOS)
PATH_MAX = 4095


def resolve_local_workdir(text: str, root: Path) -> Path:
    """Where a local profile's `workdir:` points: ~ and $VARS expanded, relative to the project
    root, symlinks resolved. OSError/ValueError/RuntimeError when it cannot be resolved."""
    wd = Path(os.path.expandvars(os.path.expanduser(text)))
    return (wd if wd.is_absolute() else Path(root) / wd).resolve()


def local_workdir_problem(workdir: Path, root: Path, literal: Path | None = None) -> str | None:
    """Why `workdir` (resolved) cannot take a synced copy of the project at `root`, or None.

    Sync makes the workdir look like the project: pointed at the project's parent, `/`, home or
    a system tree it would overwrite files that are not its own. `literal` is the path as
    written (made absolute, not resolved): /proc/self/cwd/x resolves to somewhere ordinary."""
    root = Path(root).resolve()
    raw = os.fsencode(str(workdir))
    if len(raw) > PATH_MAX or any(len(part) > NAME_MAX for part in raw.split(b"/")):
        return f"is too long (a path part may have {NAME_MAX} bytes, a path {PATH_MAX})"
    if workdir == root or root in workdir.parents:
        return "is inside the project itself"
    if workdir in root.parents:
        return "contains the project (sync would write over the files around it)"
    home = Path(os.path.expanduser("~"))
    try:
        home = home.resolve()
    except (OSError, RuntimeError):
        pass
    if workdir == home or workdir in home.parents:
        return "is your home folder or contains it (sync would write over your files)"
    for tree in _SYSTEM_TREES:
        for path in (workdir, literal or workdir):
            if path == tree or tree in path.parents:
                return f"lies under {tree}, which holds no ordinary files"
    try:
        if workdir.exists() and not workdir.is_dir():
            return "exists and is not a folder"
    except OSError as exc:
        return f"cannot be checked: {exc.strerror}"
    return None


def _local_workdir(src: _Source, path: tuple, value: Any) -> str:
    text = _nonempty_str(src, path, value)
    hint = "point workdir: at an empty folder of its own outside the project, e.g. /tmp/NAME-work"
    root = src.root or src.file.parent
    try:
        resolved = resolve_local_workdir(text, root)
    except (OSError, ValueError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise src.error(path, f"'workdir' {text!r} cannot be resolved: {reason}",
                        hint=hint) from None
    literal = Path(os.path.abspath(Path(root) / os.path.expandvars(os.path.expanduser(text))))
    problem = local_workdir_problem(resolved, root, literal)
    if problem:
        shown = text if len(text) <= 80 else text[:77] + "..."
        where = "" if str(resolved) == text else f" ({str(resolved)[:80]})"
        raise src.error(path, f"'workdir' {shown!r}{where} {problem}", hint=hint)
    return text


PROFILE_KEYS: Mapping[str, Mapping[str, Validator]] = MappingProxyType({
    "local": _COMMON | {"workdir": _local_workdir},
    "docker": _COMMON | _DOCKER_KEYS,
    "ssh": _COMMON | {
        "workdir": _abs_posix, "keep": _bool, "host": _nonempty_str, "port": _port,
        "user": _nonempty_str, "identity_file": _nonempty_str, "known_hosts": _nonempty_str,
        "docker": _ssh_docker,
    },
    "kubernetes": _COMMON | {
        "workdir": _abs_posix, "keep": _bool, "image": _nonempty_str,
        "shm_size": _memory("8Gi"), "volumes": _list_of(_kube_volume),
        "cpu": _quantity("8"), "memory": _memory("32Gi"), "context": _nonempty_str,
        "namespace": _nonempty_str, "node_selector": _str_map,
        "tolerations": _list_of(_toleration), "image_pull_secrets": _list_of(_nonempty_str),
        "env_from_secrets": _env_from_secrets, "service_account": _nonempty_str,
        "network": _choice(("host", "pod")),  # host: hostNetwork (nodes without a pod network)
    },
})
_ALL_PROFILE_KEYS = sorted({k for keys in PROFILE_KEYS.values() for k in keys})
_REQUIRED = {"docker": (), "ssh": ("host",), "kubernetes": ("image",), "local": ()}


def _kind_hint(kind: str) -> Callable[[str], str | None]:
    def hint(key: str) -> str | None:
        owners = [k for k, keys in PROFILE_KEYS.items() if key in keys]
        if not owners:
            return None
        text = f"'{key}' is for kind {' / '.join(owners)}; remove it or change kind"
        if kind == "ssh" and "docker" in owners:
            text += " (to run in a container on the ssh host, put it under `docker:`)"
        return text
    return hint


def load_profile(path: Path, name: str | None = None, *, root: Path | None = None) -> Profile:
    """Read and validate one profile file. The profile's name is its file name; `root` is the
    project folder (default: the folder above profiles/)."""
    path = Path(path)
    name = name or path.stem
    if root is None:
        root = path.parent.parent if path.parent.name == PROFILES_DIR else path.parent
    text = _read_text(path)
    data, lines = _yaml_with_lines(path, text)
    src = _Source(path, lines, default_line=1, root=Path(root))
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise src.error((), f"a profile must be a mapping of keys, not {_type_name(data)}",
                        hint="start with `kind: docker` (or local, ssh, kubernetes)")
    if "kind" not in data:
        if name != "local":
            raise src.error((), "profile is missing 'kind'",
                            hint=f"add `kind: ...` with one of {', '.join(PROFILE_KINDS)}")
        kind = "local"
    else:
        kind = _choice(PROFILE_KINDS)(src, ("kind",), data["kind"])
    values = _table(src, (), data, PROFILE_KEYS[kind], what=f"{'an' if kind == 'ssh' else 'a'} {kind} profile",
                    required=_REQUIRED[kind], extra_hint=_kind_hint(kind))
    if kind == "docker" and "image" not in values and "build" not in values:
        raise src.error((), "a docker profile needs 'image' or 'build'",
                        hint="add image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime")
    values["kind"] = kind
    if "idle_stop" in values:
        values["idle_stop_s"] = values.pop("idle_stop")
    return Profile(name=name, source=str(path), **values)


def _yaml_with_lines(path: Path, text: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML and record the line of every key (from the composed node marks).

    config_yaml bounds nesting and alias expansion, so neither this walk nor the validators
    can be made to recurse or loop without end by the file."""
    syntax_hint = "check indentation and `key: value` syntax on that line"
    try:
        data, node = config_yaml.load(text)
    except config_yaml.YamlInputError as exc:
        raise ConfigError(exc.message, file=path, line=exc.line, hint=exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"invalid YAML: {message}", file=path,
                          line=mark.line + 1 if mark else 1, hint=syntax_hint) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split("\n")[0].split())  # a ReaderError: no mark
        raise ConfigError(f"invalid YAML: {message}", file=path,
                          line=config_yaml.reader_error_line(text, exc),
                          hint="remove control characters; save the file as UTF-8 text") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _node_lines(path, node, (), lines)
    return data, lines


def _node_lines(path: Path, node: yaml.Node, at: tuple, lines: dict[tuple, int]) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(f"duplicate key '{key}'", file=path,
                                  line=key_node.start_mark.line + 1,
                                  hint="keep only one of them")
            seen.add(key)
            lines[at + (key,)] = key_node.start_mark.line + 1
            _node_lines(path, value_node, at + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(path, item, at + (i,), lines)
