"""A scripted fake NVML driver (no GPU on test machines) and a fake nvidia-smi.

`build_fake_nvml()` compiles tests/fakes/fake_nvml.c with gcc into a `libnvidia-ml.so.1`, cached
by source hash. A test then runs devloop's agent in a subprocess with that folder first on
LD_LIBRARY_PATH: the REAL pynvml loads it with ctypes at nvmlInit, so pynvml's structs, versioned
symbols and error classes are exercised for real; only the driver's answers are scripted.

    def test_x(fake_nvml):
        fake_nvml.script([gpu(name="NVIDIA H100 80GB HBM3", util=[10, 90], temp=NOT_SUPPORTED)])
        [event] = fake_nvml.run_agent("gpu")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

FAKES_DIR = Path(__file__).resolve().parent
SOURCE = FAKES_DIR / "fake_nvml.c"
FAKE_SMI = FAKES_DIR / "fake-nvidia-smi"
REPO_ROOT = FAKES_DIR.parent.parent

# NVML return codes (nvml.h) a script can make a query or nvmlInit return
NOT_SUPPORTED = 3
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15

GIB = 1024**3
MIB = 1024**2


class Fail:
    """A scripted NVML error for one field: `temp=Fail(NOT_SUPPORTED)`."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __str__(self) -> str:
        return f"!{self.code}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "devloop-tests"


def build_fake_nvml(root: Path | None = None) -> Path:
    """Compile the fake library (once per source version); the folder holding libnvidia-ml.so.1."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc not found: the fake NVML library cannot be built")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    lib_dir = (root or cache_root()) / f"fake-nvml-{digest}"
    lib = lib_dir / "libnvidia-ml.so.1"
    if lib.is_file():
        return lib_dir
    lib_dir.mkdir(parents=True, exist_ok=True)
    tmp = lib_dir / f".build-{os.getpid()}.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(SOURCE)],
                   check=True, capture_output=True, text=True)
    tmp.replace(lib)  # atomic: parallel builds of the same source agree
    return lib_dir


def gpu(**fields: Any) -> dict[str, Any]:
    """One scripted GPU. Fields: name, uuid, util, mem_used, mem_reserved, mem_total, temp,
    power_mw, power_limit_mw (an int, a list cycled call by call, or Fail(code)); mem_v2
    (Fail(code) makes the v2 memory query fail); procs / gprocs: [(pid, bytes or None)]."""
    return dict(fields)


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _procs(items: Sequence[tuple[int, int | None]] | Fail) -> str:
    if isinstance(items, Fail):
        return str(items)
    return ",".join(f"{pid}:{'na' if mem is None else mem}" for pid, mem in items)


class FakeNvml:
    """One test's fake NVML: its script file, call log, bin folder and environment."""

    def __init__(self, workdir: Path, lib_dir: Path) -> None:
        self.workdir = workdir
        self.lib_dir = lib_dir
        self.config = workdir / "fake-nvml.conf"
        self.log = workdir / "fake-nvml.log"
        self.bin = workdir / "bin"
        self.bin.mkdir(exist_ok=True)
        self.script([])

    def script(self, gpus: Sequence[Mapping[str, Any]] = (), *, init: int = 0,
               driver: str = "550.54.15", process_names: Mapping[int, str] | None = None) -> None:
        """Write what the fake driver answers from the next nvmlInit on."""
        lines = [f"init={init}", f"count={len(gpus)}", f"driver={driver}"]
        for pid, name in (process_names or {}).items():
            lines.append(f"proc.{pid}={name}")
        for index, fields in enumerate(gpus):
            for key, value in fields.items():
                text = _procs(value) if key in ("procs", "gprocs") else _value(value)
                lines.append(f"{index}.{key}={text}")
        self.config.write_text("\n".join(lines) + "\n")

    def calls(self) -> list[str]:
        """nvmlInit* / nvmlShutdown calls the fake library saw, in order."""
        return self.log.read_text().split() if self.log.exists() else []

    def env(self, *, library: bool = True, **extra: str) -> dict[str, str]:
        """Environment for the agent subprocess: the fake library first on LD_LIBRARY_PATH
        (`library=False`: not there, as on a machine without a driver), PATH = only the test's
        bin folder (so no real nvidia-smi is found)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_NVML", "FAKE_SMI"))}
        ld = [str(self.lib_dir)] if library else []
        if env.get("LD_LIBRARY_PATH"):
            ld.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
        env["FAKE_NVML_CONFIG"] = str(self.config)
        env["FAKE_NVML_LOG"] = str(self.log)
        env["PATH"] = str(self.bin)
        env["PYTHONPATH"] = ""
        env.update(extra)
        return env

    def bundle(self) -> Path:
        """The agent zipapp exactly as targets ship it."""
        from devloop.core.agent_bundle import write_bundle

        return write_bundle(self.workdir / "agent")

    def run_agent(self, *args: str, env: Mapping[str, str] | None = None,
                  timeout: float = 60) -> list[dict]:
        """Run the agent bundle (`python bundle ARGS`) under the fake; its JSON lines."""
        proc = subprocess.run(
            [sys.executable, str(self.bundle()), *args], env=dict(env or self.env()),
            capture_output=True, text=True, timeout=timeout, cwd=self.workdir,
        )
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def run_python(self, code: str, *, env: Mapping[str, str] | None = None,
                   timeout: float = 60) -> str:
        """Run `python -c code` with the agent bundle importable as `devloop_agent`; its stdout."""
        prelude = f"import sys; sys.path.insert(0, {str(self.bundle())!r})\n"
        proc = subprocess.run(
            [sys.executable, "-c", prelude + code], env=dict(env or self.env()),
            capture_output=True, text=True, timeout=timeout, cwd=self.workdir,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    # -- the nvidia-smi fallback ------------------------------------------------------------

    def install_smi(self, gpu_rows: Sequence[str] = (), app_rows: Sequence[str] = ()) -> Path:
        """Put the fake nvidia-smi in the bin folder, printing these CSV rows."""
        smi = self.bin / "nvidia-smi"
        shutil.copy(FAKE_SMI, smi)
        smi.chmod(0o755)
        (self.workdir / "smi-gpus.csv").write_text("".join(row + "\n" for row in gpu_rows))
        (self.workdir / "smi-apps.csv").write_text("".join(row + "\n" for row in app_rows))
        return smi

    def smi_env(self, *, library: bool = False, exit_code: int = 0, message: str = "",
                **extra: str) -> dict[str, str]:
        env = self.env(library=library, **extra)
        env["FAKE_SMI_GPUS"] = str(self.workdir / "smi-gpus.csv")
        env["FAKE_SMI_APPS"] = str(self.workdir / "smi-apps.csv")
        env["FAKE_SMI_LOG"] = str(self.workdir / "smi.log")
        if exit_code:
            env["FAKE_SMI_EXIT"] = str(exit_code)
            if message:
                env["FAKE_SMI_MESSAGE"] = message
        return env


@pytest.fixture(scope="session")
def fake_nvml_lib() -> Path:
    """The fake libnvidia-ml.so, compiled with gcc. A machine that cannot build it fails the GPU
    tests loudly (they would prove nothing skipped) unless DEVLOOP_SKIP_GPU_FAKE=1 says so."""
    import os

    try:
        return build_fake_nvml()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        why = f"cannot build the fake NVML library (gcc needed): {getattr(exc, 'stderr', '') or exc}"
        if os.environ.get("DEVLOOP_SKIP_GPU_FAKE") == "1":
            pytest.skip(f"GPU TESTS SKIPPED because DEVLOOP_SKIP_GPU_FAKE=1: {why}")
        pytest.fail(f"{why}; install gcc, or set DEVLOOP_SKIP_GPU_FAKE=1 to skip the GPU tests on purpose")


@pytest.fixture
def fake_nvml(tmp_path: Path, fake_nvml_lib: Path) -> FakeNvml:
    """A fake NVML driver for this test (no GPU here): script it, then run the agent under it."""
    return FakeNvml(tmp_path, fake_nvml_lib)
