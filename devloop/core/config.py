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
import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import yaml

CONFIG_FILE = "devloop.toml"
PROFILES_DIR = "profiles"
PROFILE_KINDS = ("local", "docker", "ssh", "kubernetes")
RERUN_POLICIES = ("linear", "reactive")
PROMOTE_TARGETS = ("argo", "github")
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


@dataclass(frozen=True)
class RunConfig:
    rerun: str = "linear"  # "linear" | "reactive"
    env: Mapping[str, str] = field(default_factory=_no_entries)
    python: str | None = None  # interpreter for the kernel (None: the profile's, else python3)


@dataclass(frozen=True)
class GpuConfig:
    interval_ms: int = 1000


@dataclass(frozen=True)
class UiConfig:
    scrollback: int = 10000


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


@dataclass(frozen=True)
class PromoteConfig:
    targets: tuple[str, ...] = ("argo",)
    out: str = "pipelines"
    name: str | None = None  # pipeline name (None: the project name)


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
                f"invalid profile name {name!r}",
                file=where,
                hint="profile names are file names in profiles/: letters, digits, '-', '_', '.'",
            )
        path = self._profile_path(name)
        if path is None:
            if name == "local":
                return Profile(name="local")
            available = self.profile_names()
            raise ConfigError(
                f"unknown profile {name!r}; available: {', '.join(available)}",
                file=where,
                line=line,
                suggestion=nearest(name, available),
                hint=f"create {PROFILES_DIR}/{name}.yaml (`devloop init` writes examples) "
                "or pick one of the available profiles",
            )
        return load_profile(path, name)

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

    def line(self, path: tuple) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.default_line

    def error(self, path: tuple, message: str, *, hint: str | None = None,
              suggestion: str | None = None) -> ConfigError:
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
        raise src.error(path, f"'{_label(path)}' must be a string, not {_type_name(value)}",
                        hint=f'quote it: {path[-1]} = "..."')
    return value


def _nonempty_str(src: _Source, path: tuple, value: Any) -> str:
    text = _str(src, path, value)
    if not text.strip():
        raise src.error(path, f"'{_label(path)}' must not be empty")
    return text


def _int_at_least(minimum: int) -> Validator:
    def check(src: _Source, path: tuple, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise src.error(path, f"'{_label(path)}' must be a whole number, not {_type_name(value)}",
                            hint=f"write e.g. {path[-1]} = {max(minimum, 1)}")
        if value < minimum:
            raise src.error(path, f"'{_label(path)}' must be at least {minimum}, not {value}")
        return value
    return check


def _port(src: _Source, path: tuple, value: Any) -> int:
    port = _int_at_least(1)(src, path, value)
    if port > 65535:
        raise src.error(path, f"'{_label(path)}' must be a port number (1-65535), not {port}")
    return port


def _bool(src: _Source, path: tuple, value: Any) -> bool:
    if not isinstance(value, bool):
        raise src.error(path, f"'{_label(path)}' must be true or false, not {_type_name(value)}")
    return value


def _choice(choices: tuple[str, ...]) -> Validator:
    def check(src: _Source, path: tuple, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise src.error(
                path,
                f"'{_label(path)}' must be one of {', '.join(choices)}, not {_type_name(value)}",
                suggestion=nearest(str(value), choices),
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


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env(src: _Source, path: tuple, value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise src.error(path, f"'{_label(path)}' must be a table of NAME = value, not "
                        f"{_type_name(value)}")
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise src.error(path + (key,), f"'{_label(path)}' has an invalid variable name {key!r}",
                            hint="use letters, digits and '_', not starting with a digit")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise src.error(path + (key,), f"'{_label(path + (key,))}' must be a string, not "
                            f"{_type_name(val)}", hint='quote the value: "..."')
        out[key] = val if isinstance(val, str) else str(val)
    return MappingProxyType(out)


def _str_map(src: _Source, path: tuple, value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise src.error(path, f"'{_label(path)}' must be a mapping, not {_type_name(value)}")
    out = {}
    for key, val in value.items():
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise src.error(path + (key,), f"'{_label(path + (key,))}' must be a string, not "
                            f"{_type_name(val)}", hint='quote the value: "..."')
        out[str(key)] = val if isinstance(val, str) else str(val)
    return MappingProxyType(out)


_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)(e[+-]?\d+|[KMGTPE]i|[mkMGTPE])?$")
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


_DOCKER_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(?:([mgtMGTkK])[bB]|([mgt])|([bB]))$")


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


_GPU_ID = re.compile(r"^(\d+|(GPU|MIG)-[A-Za-z0-9/-]+)$")
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
        if value < 0:
            raise bad
        return value
    if isinstance(value, str):
        text = value.strip()
        if text == "all":
            return "all"
        if text.isdigit():
            return int(text)
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
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
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
                        f"{_type_name(value)}")
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


_PROJECT = {"name": _nonempty_str, "entry": _nonempty_str, "profile": _nonempty_str}
_SYNC = {"dest": _nonempty_str, "exclude": _list_of(_str), "debounce_ms": _int_at_least(0)}
_RUN = {"rerun": _choice(RERUN_POLICIES), "env": _env, "python": _nonempty_str}
_GPU = {"interval_ms": _int_at_least(50)}
_UI = {"scrollback": _int_at_least(100)}
_STAGE = {
    "name": _nonempty_str, "run": _nonempty_str, "needs": _list_of(_str, allow_single=True),
    "outputs": _list_of(_str, allow_single=True), "gpus": _stage_gpus,
    "cpu": _quantity("4"), "memory": _memory("16Gi"), "env": _env,
}
_PROMOTE = {"targets": _list_of(_choice(PROMOTE_TARGETS), allow_single=True),
            "out": _nonempty_str, "name": _nonempty_str}
_TOP = ("project", "sync", "run", "gpu", "ui", "stage", "promote")


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
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(file, text, exc) from None
    return _build_config(file, text, data)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
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
                            suggestion=nearest(key, _TOP), hint=top_hint(key))

    project = _table(src, ("project",), data.get("project", {}), _PROJECT, what="[project]")
    sync = _table(src, ("sync",), data.get("sync", {}), _SYNC, what="[sync]")
    run = _table(src, ("run",), data.get("run", {}), _RUN, what="[run]")
    gpu = _table(src, ("gpu",), data.get("gpu", {}), _GPU, what="[gpu]")
    ui = _table(src, ("ui",), data.get("ui", {}), _UI, what="[ui]")
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
        stages=stages,
        promote=PromoteConfig(**promote),
        profile_line=src.lines.get(("project", "profile")),
    )


def _stages(src: _Source, value: Any) -> tuple[Stage, ...]:
    if isinstance(value, Mapping):
        raise src.error(("stage",), "'stage' must be an array of tables",
                        hint="write [[stage]] (double brackets) for each stage")
    if not isinstance(value, list):
        raise src.error(("stage",), f"'stage' must be [[stage]] tables, not {_type_name(value)}")
    stages: list[Stage] = []
    for i, raw in enumerate(value):
        path = ("stage", i)
        fields_ = _table(src, path, raw, _STAGE, what="[[stage]]", required=("name", "run"))
        stages.append(Stage(**fields_, line=src.line(path)))
    names = [s.name for s in stages]
    for i, stage in enumerate(stages):
        if names.index(stage.name) != i:
            raise src.error(("stage", i, "name"), f"duplicate stage name {stage.name!r}",
                            hint="give every [[stage]] its own name")
        for j, need in enumerate(stage.needs):
            if need == stage.name:
                raise src.error(("stage", i, "needs"), f"stage {stage.name!r} needs itself",
                                hint="remove it from needs")
            if need not in names:
                raise src.error(("stage", i, "needs"),
                                f"stage {stage.name!r} needs unknown stage {need!r}",
                                suggestion=nearest(need, names),
                                hint=f"stages: {', '.join(names)}")
    cycle = _find_cycle({s.name: s.needs for s in stages})
    if cycle:
        i = names.index(cycle[0])
        raise src.error(("stage", i, "needs"),
                        f"stages depend on each other in a cycle: {' -> '.join(cycle)}",
                        hint="remove one of these needs")
    return tuple(stages)


def _find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


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
            "toleration_seconds": _int_at_least(0)}
    return MappingProxyType(_table(src, path, value, spec, what="a toleration"))


def _env_from_secrets(src: _Source, path: tuple, value: Any) -> tuple[Any, ...]:
    """A list of secret names / {name, secret, key}; or a mapping {ENV_NAME: "secret/key"}."""
    if not isinstance(value, Mapping):
        return _list_of(_env_from_secret)(src, path, value)
    out = []
    for env_name, ref in value.items():
        where = path + (env_name,)
        if not isinstance(env_name, str) or not _ENV_NAME.match(env_name):
            raise src.error(where, f"invalid variable name {env_name!r} in env_from_secrets")
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
        raise src.error(path + ("name",), f"invalid variable name {out['name']!r}")
    return MappingProxyType(out)


_COMMON = {
    "kind": _choice(PROFILE_KINDS), "env": _env, "setup": _nonempty_str, "python": _nonempty_str,
    "gpus": _gpus, "runs_on": _runs_on, "snapshot_on_stop": _bool,
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


def _local_workdir(src: _Source, path: tuple, value: Any) -> str:
    return _nonempty_str(src, path, value)


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


def load_profile(path: Path, name: str | None = None) -> Profile:
    """Read and validate one profile file. The profile's name is its file name."""
    path = Path(path)
    name = name or path.stem
    text = _read_text(path)
    data, lines = _yaml_with_lines(path, text)
    src = _Source(path, lines, default_line=1)
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
    return Profile(name=name, source=str(path), **values)


def _yaml_with_lines(path: Path, text: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML and record the line of every key (from the composed node marks)."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"invalid YAML: {message}", file=path,
                          line=mark.line + 1 if mark else None,
                          hint="check indentation and `key: value` syntax on that line") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=path) from None
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
