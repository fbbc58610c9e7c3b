"""`devloop doctor`: does the target's environment match this machine's, and can devloop use it?

Two parts. Target checks: the target starts, the agent runs, plus whatever the target kind
knows how to check (`Target.doctor_checks()` when the class has it: engine reachable, image
present, GPUs seen...). Environment match: the project's declared dependencies
(requirements*.txt, pyproject.toml) with their local versions next to the versions the remote
agent's `ready` event lists, and the two Python versions; every difference is flagged.
"""

from __future__ import annotations

import platform
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devloop.core.targets.base import TargetError

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Config, Profile

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    """PEP 503 name: what the agent's `ready` packages are keyed by."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class PackageRow:
    name: str
    wanted: str  # the requirement's version spec as declared ("" when none)
    local: str | None
    remote: str | None
    status: str  # "ok" | "differs" | "missing remotely" | "missing locally" | "missing both"


@dataclass
class DoctorReport:
    profile: str
    kind: str
    checks: list[Check] = field(default_factory=list)
    python_local: str = platform.python_version()
    python_remote: str | None = None
    sources: list[str] = field(default_factory=list)
    packages: list[PackageRow] = field(default_factory=list)

    @property
    def python_ok(self) -> bool:
        return self.python_remote is not None and \
            self.python_remote.split(".")[:2] == self.python_local.split(".")[:2]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.python_ok and \
            all(p.status == "ok" for p in self.packages)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "kind": self.kind, "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
            "python": {"local": self.python_local, "remote": self.python_remote, "ok": self.python_ok},
            "sources": self.sources,
            "packages": [asdict(p) for p in self.packages],
        }


def _requirement(line: str) -> tuple[str, str] | None:
    """(name, spec) of one requirement line; None for comments, options, paths and URLs."""
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith(("#", "-", ".", "/")) or "://" in line.split(";")[0].split("@")[0]:
        return None
    m = _NAME.match(line.split(";", 1)[0])
    if not m:
        return None
    spec = m.group(3).strip()
    if spec.startswith("@"):  # name @ url
        spec = ""
    return m.group(1), spec


def project_dependencies(root: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """({canonical name: (declared name, spec)}, the files read): requirements*.txt at the root
    and pyproject.toml's [project].dependencies."""
    deps: dict[str, tuple[str, str]] = {}
    sources: list[str] = []
    for path in sorted(root.glob("requirements*.txt")):
        sources.append(path.name)
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            req = _requirement(line)
            if req:
                deps.setdefault(canonical(req[0]), req)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        listed = (data.get("project") or {}).get("dependencies") or []
        if listed:
            sources.append("pyproject.toml")
        for line in listed:
            req = _requirement(str(line))
            if req:
                deps.setdefault(canonical(req[0]), req)
    return deps, sources


def local_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def compare_packages(deps: dict[str, tuple[str, str]], remote: dict[str, str]) -> list[PackageRow]:
    remote_c = {canonical(k): v for k, v in remote.items()}
    rows = []
    for key in sorted(deps):
        name, spec = deps[key]
        here, there = local_version(name), remote_c.get(key)
        if here is None and there is None:
            status = "missing both"
        elif there is None:
            status = "missing remotely"
        elif here is None:
            status = "missing locally"
        else:
            status = "ok" if here == there else "differs"
        rows.append(PackageRow(name=name, wanted=spec, local=here, remote=there, status=status))
    return rows


async def run_doctor(config: "Config", profile: "Profile") -> DoctorReport:
    """Start the profile's target, ask its agent what it runs, compare, stop the target."""
    from devloop.core.kernel import KernelClient
    from devloop.core.targets import create_target

    report = DoctorReport(profile=profile.name, kind=profile.kind)
    deps, report.sources = project_dependencies(Path(config.root))
    ready: dict[str, Any] = {}
    target = None
    try:
        target = create_target(profile, config)
        info = await target.start()
        where = "this machine" if info.kind == "local" else f"{info.kind} {info.id}"
        report.checks.append(Check("target started", True, f"{where}, workdir {info.workdir}"))
        channel = await target.spawn(target.agent_argv("kernel"), cwd=info.workdir)
        kernel = KernelClient(channel, on_output=lambda *_: None)
        try:
            ready = await kernel.start(timeout=60)
        finally:
            await kernel.shutdown()
        report.checks.append(Check("devloop agent runs", True,
                                   f"{info.python}: Python {ready.get('python')}, "
                                   f"{len(ready.get('packages') or {})} packages installed"))
    except TargetError as exc:
        report.checks.append(Check("target started" if target is None or not report.checks
                                   else "devloop agent runs", False, str(exc)))
    finally:
        if target is not None:
            try:
                report.checks += [Check(*c) for c in await target.doctor_checks()]
            except TargetError as exc:
                report.checks.append(Check(f"{profile.kind} checks", False, str(exc)))
            try:
                await target.stop()
            except TargetError:
                pass
    if ready:
        report.python_remote = str(ready.get("python") or "") or None
        report.packages = compare_packages(deps, dict(ready.get("packages") or {}))
    return report


def format_report(report: DoctorReport) -> str:
    """Readable text: checks, then Python, then the package table with differences flagged."""
    out = [f"devloop doctor: profile {report.profile} ({report.kind})"]
    for c in report.checks:
        out.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    remote = report.python_remote or "unknown"
    out.append(f"  {'ok  ' if report.python_ok else 'DIFF'}  python: local {report.python_local}, "
               f"remote {remote}")
    if not report.sources:
        out.append("  (no requirements*.txt or pyproject.toml dependencies to compare)")
    elif report.packages or report.python_remote:
        out.append(f"packages declared in {', '.join(report.sources)}:")
        width = max([len(p.name) for p in report.packages] + [7])
        out.append(f"  {'package':<{width}}  {'wanted':<14}  {'local':<12}  {'remote':<12}  status")
        for p in report.packages:
            flag = "" if p.status == "ok" else "  <--"
            out.append(f"  {p.name:<{width}}  {p.wanted or '-':<14}  {p.local or '-':<12}  "
                       f"{p.remote or '-':<12}  {p.status}{flag}")
    out.append("doctor: all good" if report.ok else "doctor: differences or failures flagged above")
    return "\n".join(out)
