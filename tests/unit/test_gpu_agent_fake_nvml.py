"""The agent's GPU sampler through the REAL pynvml against a FAKE libnvidia-ml.so.1 (no GPU here).

The fake library (tests/fakes/fake_nvml.c, compiled with gcc) is put first on LD_LIBRARY_PATH of
a subprocess running the agent bundle exactly as targets ship it; pynvml loads it with ctypes at
nvmlInit. Nothing in pynvml is patched: only the driver's answers are scripted.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

from tests.fakes.nvml import (  # noqa: F401  (fixtures)
    DRIVER_NOT_LOADED,
    FUNCTION_NOT_FOUND,
    GIB,
    MIB,
    NOT_SUPPORTED,
    Fail,
    fake_nvml,
    fake_nvml_lib,
    gpu,
)

pytestmark = pytest.mark.timeout(120)

H100 = "NVIDIA H100 80GB HBM3"
GPU_KEYS = {"index", "name", "uuid", "util", "mem_used", "mem_total", "temp", "power",
            "power_limit", "processes"}


def test_one_gpu_fake_nvml_all_fields_in_agreed_units(fake_nvml):
    fake_nvml.script(
        [gpu(name=H100, uuid="GPU-aaaa", util=37, mem_used=12 * GIB, mem_reserved=512 * MIB,
             mem_total=80 * GIB, temp=45, power_mw=123456, power_limit_mw=700000,
             procs=[(4242, 10 * GIB), (77, None)], gprocs=[(4242, 10 * GIB), (88, MIB)])],
        process_names={4242: "python3 train.py", 88: "Xorg"},
    )
    [event] = fake_nvml.run_agent("gpu")
    assert event["type"] == "gpu" and event["available"] is True and event["source"] == "nvml"
    [g] = event["gpus"]
    assert set(g) == GPU_KEYS
    assert g["index"] == 0 and g["name"] == H100 and g["uuid"] == "GPU-aaaa"
    assert g["util"] == 37
    assert g["mem_used"] == 12 * GIB  # the v2 query: reserved memory is not "used"
    assert g["mem_total"] == 80 * GIB
    assert g["temp"] == 45
    assert g["power"] == 123.5 and g["power_limit"] == 700.0  # mW -> W
    # compute and graphics lists merged by pid; a pid NVML cannot name is "n/a", unknown memory too
    assert g["processes"] == [
        {"pid": 77, "name": "n/a", "mem": "n/a"},
        {"pid": 88, "name": "Xorg", "mem": MIB},
        {"pid": 4242, "name": "python3 train.py", "mem": 10 * GIB},
    ]
    assert fake_nvml.calls() == ["nvmlInitWithFlags"]


def test_eight_gpus_fake_nvml_in_index_order(fake_nvml):
    fake_nvml.script([gpu(name=H100, uuid=f"GPU-{i}", util=10 * i, mem_used=i * GIB)
                      for i in range(8)])
    [event] = fake_nvml.run_agent("gpu")
    assert [g["index"] for g in event["gpus"]] == list(range(8))
    assert [g["uuid"] for g in event["gpus"]] == [f"GPU-{i}" for i in range(8)]
    assert [g["util"] for g in event["gpus"]] == [10 * i for i in range(8)]
    assert [g["mem_used"] for g in event["gpus"]] == [i * GIB for i in range(8)]


def test_zero_gpus_fake_nvml_says_no_gpu(fake_nvml):
    fake_nvml.script([], driver="550.54.15")
    [event] = fake_nvml.run_agent("gpu")
    assert event == {"type": "gpu", "available": False,
                     "reason": "NVML sees no GPU (driver 550.54.15): start the target with GPUs"}


def test_not_supported_fields_fake_nvml_become_na(fake_nvml):
    na = Fail(NOT_SUPPORTED)
    fake_nvml.script([gpu(name=na, util=na, temp=na, power_mw=na, power_limit_mw=na, procs=na,
                          gprocs=na, mem_used=4 * GIB, mem_total=24 * GIB)])
    [event] = fake_nvml.run_agent("gpu")
    [g] = event["gpus"]
    assert event["available"] is True
    assert g["name"] == g["util"] == g["temp"] == g["power"] == g["power_limit"] == "n/a"
    assert g["processes"] == []
    assert (g["mem_used"], g["mem_total"]) == (4 * GIB, 24 * GIB)


def test_memory_unsupported_fake_nvml_both_na(fake_nvml):
    fake_nvml.script([gpu(mem_used=Fail(NOT_SUPPORTED))])  # as on some MIG / vGPU setups
    [event] = fake_nvml.run_agent("gpu")
    assert (event["gpus"][0]["mem_used"], event["gpus"][0]["mem_total"]) == ("n/a", "n/a")


def test_memory_v2_missing_fake_nvml_falls_back_to_v1(fake_nvml):
    # an older driver without nvmlDeviceGetMemoryInfo_v2: v1 counts reserved memory as used
    fake_nvml.script([gpu(mem_v2=Fail(FUNCTION_NOT_FOUND), mem_used=[GIB, 2 * GIB],
                          mem_reserved=MIB, mem_total=16 * GIB)])
    events = fake_nvml.run_agent("gpu", "--interval", "0.01", "--count", "2")
    assert [e["gpus"][0]["mem_used"] for e in events] == [GIB + MIB, 2 * GIB + MIB]


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None,
                    reason="a real NVML library is installed on this machine")
def test_library_missing_fake_nvml_absent_reports_why(fake_nvml):
    [event] = fake_nvml.run_agent("gpu", env=fake_nvml.env(library=False))
    assert event == {"type": "gpu", "available": False,
                     "reason": "NVML: NVML Shared Library Not Found; nvidia-smi not found on PATH"}


def test_driver_not_loaded_fake_nvml_reports_why(fake_nvml):
    fake_nvml.script([gpu()], init=DRIVER_NOT_LOADED)
    [event] = fake_nvml.run_agent("gpu")
    assert event == {"type": "gpu", "available": False,
                     "reason": "NVML: Driver Not Loaded; nvidia-smi not found on PATH"}


def test_pynvml_not_installed_in_target_reports_why(fake_nvml):
    # `python -S`: no site-packages, as in a target image without nvidia-ml-py
    proc = subprocess.run([sys.executable, "-S", str(fake_nvml.bundle()), "gpu"],
                          env=fake_nvml.env(), capture_output=True, text=True, timeout=60)
    event = json.loads(proc.stdout)
    assert event["available"] is False
    assert event["reason"].startswith("pynvml not importable (")
    assert "pip install nvidia-ml-py" in event["reason"]
    assert event["reason"].endswith("; nvidia-smi not found on PATH")


SAMPLER_SCRIPT = """
import json, threading
from devloop_agent.gpu import Sampler, sample
events, enough = [], threading.Event()
def emit(event):
    events.append(event)
    if len(events) >= 4:
        enough.set()
sampler = Sampler(0.01, emit).start()
assert enough.wait(60), "the sampler produced no samples"
sampler.stop()
after_stop = len(events)
print(json.dumps({"events": events, "alive": sampler.running, "one_more": sample(),
                  "stopped_at": after_stop, "final": len(events)}))
"""


def test_sampler_fake_nvml_inits_once_and_emits_changing_values(fake_nvml):
    fake_nvml.script([gpu(util=[10, 50, 90], mem_used=[GIB, 3 * GIB])])
    result = json.loads(fake_nvml.run_python(SAMPLER_SCRIPT))
    utils = [e["gpus"][0]["util"] for e in result["events"]]
    assert utils[:4] == [10, 50, 90, 10]
    assert [e["gpus"][0]["mem_used"] for e in result["events"]][:4] == [GIB, 3 * GIB, GIB, 3 * GIB]
    assert result["alive"] is False
    assert result["stopped_at"] == result["final"]  # nothing emitted after stop() returned
    assert result["one_more"]["available"] is True
    # NVML initialised once for the whole process: the sampler and sample() share it
    assert fake_nvml.calls() == ["nvmlInitWithFlags"]


def test_sampler_thread_is_daemon_and_restartable_fake_nvml(fake_nvml):
    fake_nvml.script([gpu()])
    out = fake_nvml.run_python("""
import threading
from devloop_agent.gpu import Sampler
got = threading.Event()
s = Sampler(0.01, lambda e: got.set())
s.start(); assert got.wait(60); daemon = s._thread.daemon; s.stop()
got.clear(); s.start(); assert got.wait(60); s.stop()
print(daemon, s.running)
""")
    assert out.split() == ["True", "False"]
    assert fake_nvml.calls() == ["nvmlInitWithFlags"]


def test_sampler_stops_when_emit_raises_fake_nvml(fake_nvml):
    fake_nvml.script([gpu()])
    out = fake_nvml.run_python("""
from devloop_agent.gpu import Sampler
def emit(event):
    raise BrokenPipeError("the event stream is gone")
s = Sampler(0.01, emit).start()
s._thread.join(60)
print(s.running)
""")
    assert out.split() == ["False"]


def test_sampler_rejects_non_positive_interval_fake_nvml(fake_nvml):
    out = fake_nvml.run_python("""
from devloop_agent.gpu import Sampler
try:
    Sampler(0, print)
except ValueError as exc:
    print(exc)
""")
    assert out.strip() == "interval must be > 0 seconds, got 0.0"


def test_gpu_mode_interval_count_fake_nvml_inits_once(fake_nvml):
    fake_nvml.script([gpu(util=[1, 2, 3])])
    events = fake_nvml.run_agent("gpu", "--interval", "0.01", "--count", "3")
    assert [e["gpus"][0]["util"] for e in events] == [1, 2, 3]
    assert fake_nvml.calls() == ["nvmlInitWithFlags"]


def test_gpu_mode_bad_arguments_exit_2(fake_nvml):
    proc = subprocess.run([sys.executable, str(fake_nvml.bundle()), "gpu", "--interval", "-1"],
                          env=fake_nvml.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: gpu [--interval SECONDS] [--count N]" in proc.stderr


def test_kernel_gpu_op_streams_samples_fake_nvml(fake_nvml):
    """The path `devloop up` uses: `{"op":"gpu"}` to the agent's kernel starts the Sampler and
    its samples arrive as `gpu` events on the protocol stream."""
    fake_nvml.script([gpu(util=[5, 6, 7])])
    proc = subprocess.Popen([sys.executable, str(fake_nvml.bundle()), "kernel"], env=fake_nvml.env(),
                            cwd=fake_nvml.workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write('{"op":"gpu","interval":0.01}\n')
        proc.stdin.flush()
        samples = []
        for line in proc.stdout:
            event = json.loads(line)
            if event["type"] == "gpu":
                samples.append(event)
                if len(samples) == 3:
                    break
        proc.stdin.write('{"op":"gpu","interval":0}\n{"op":"shutdown"}\n')
        proc.stdin.flush()
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert [s["gpus"][0]["util"] for s in samples] == [5, 6, 7]
    assert all(s["available"] and s["source"] == "nvml" for s in samples)
    assert fake_nvml.calls() == ["nvmlInitWithFlags"]
