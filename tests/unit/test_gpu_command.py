"""`devloop gpu` end to end on the local target with a FAKE libnvidia-ml.so.1 (no GPU here).

The real CLI starts the local target, which runs the agent bundle's `gpu` mode; the real pynvml
in that process loads the fake library from LD_LIBRARY_PATH.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.fakes.nvml import GIB, fake_nvml, fake_nvml_lib, gpu  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def devloop(fake_nvml, *args, env=None):
    env = dict(env or fake_nvml.env())
    env["XDG_CACHE_HOME"] = str(fake_nvml.workdir / "cache")
    return subprocess.run([sys.executable, "-m", "devloop.cli", "gpu", *args], env=env,
                          cwd=fake_nvml.workdir, capture_output=True, text=True, timeout=90)


def test_devloop_gpu_json_local_fake_nvml(fake_nvml):
    fake_nvml.script([gpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-x", util=64, mem_used=7 * GIB,
                          mem_total=80 * GIB, procs=[(4242, GIB)])], process_names={4242: "python3"})
    proc = devloop(fake_nvml, "--json")
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    event = json.loads(line)
    assert event["event"] == "gpu" and event["available"] is True and event["source"] == "nvml"
    [g] = event["gpus"]
    assert (g["name"], g["uuid"], g["util"], g["mem_used"]) == ("NVIDIA H100 80GB HBM3", "GPU-x", 64, 7 * GIB)
    assert g["processes"] == [{"pid": 4242, "name": "python3", "mem": GIB}]


def test_devloop_gpu_table_local_fake_nvml(fake_nvml):
    fake_nvml.script([gpu(name="NVIDIA H100 80GB HBM3", util=64, mem_used=7 * GIB, mem_total=80 * GIB)])
    proc = devloop(fake_nvml)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER"]
    assert "NVIDIA H100 80GB HBM3" in lines[1] and "64%" in lines[1] and "7.0 GiB / 80.0 GiB" in lines[1]


def test_devloop_gpu_no_gpu_exit_1_with_reason_fake_nvml_driver_not_loaded(fake_nvml):
    fake_nvml.script([gpu()], init=9)
    proc = devloop(fake_nvml)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "no GPU: NVML: Driver Not Loaded; nvidia-smi not found on PATH"


def test_devloop_gpu_watch_until_ctrl_c_fake_nvml(fake_nvml):
    fake_nvml.script([gpu(util=[11, 22, 33])])
    env = fake_nvml.env()
    env["XDG_CACHE_HOME"] = str(fake_nvml.workdir / "cache")
    proc = subprocess.Popen([sys.executable, "-m", "devloop.cli", "gpu", "--watch", "--json",
                             "--interval", "20"], env=env, cwd=fake_nvml.workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        utils = [json.loads(proc.stdout.readline())["gpus"][0]["util"] for _ in range(4)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert utils == [11, 22, 33, 11]
    assert fake_nvml.calls()[-1:] == ["nvmlInitWithFlags"]  # one agent, NVML initialised once
    assert fake_nvml.calls().count("nvmlInitWithFlags") == 1


def test_devloop_gpu_bad_interval_exit_2(fake_nvml):
    proc = devloop(fake_nvml, "--watch", "--interval", "0")
    assert proc.returncode == 2
    assert "--interval must be a positive number of milliseconds" in proc.stderr
