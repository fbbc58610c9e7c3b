"""The agent's nvidia-smi fallback, with a FAKE `nvidia-smi` script on PATH (no GPU or driver here).

The agent falls back to `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` when NVML
cannot be used (no library, driver not loaded, pynvml missing). The fake prints CSV rows as the
real one does, including its "[N/A]" / "[Not Supported]" placeholders and its failure messages.
"""

from __future__ import annotations

import pytest

from tests.fakes.nvml import DRIVER_NOT_LOADED, GIB, MIB, fake_nvml, fake_nvml_lib, gpu  # noqa: F401

pytestmark = pytest.mark.timeout(120)

ROWS = [
    "0, NVIDIA H100 80GB HBM3, GPU-aaaa, 37, 12288, 81559, 45, 123.45, 700.00",
    "1, NVIDIA GeForce RTX 3090, GPU-bbbb, [N/A], 0, 24576, [N/A], [Not Supported], [N/A]",
]
APPS = [
    "GPU-aaaa, 4242, python3, 10240",
    "GPU-aaaa, 77, [Insufficient Permissions], [N/A]",
    "GPU-cccc, 99, gone, 5",  # a GPU the query did not list: ignored
]


def test_smi_fallback_fake_nvidia_smi_parses_rows_and_na(fake_nvml):
    fake_nvml.install_smi(ROWS, APPS)
    [event] = fake_nvml.run_agent("gpu", env=fake_nvml.smi_env())
    assert event["available"] is True and event["source"] == "nvidia-smi"
    h100, rtx = event["gpus"]
    assert h100 == {
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-aaaa", "util": 37,
        "mem_used": 12288 * MIB, "mem_total": 81559 * MIB, "temp": 45, "power": 123.5,
        "power_limit": 700, "processes": [
            {"pid": 4242, "name": "python3", "mem": 10 * GIB},
            {"pid": 77, "name": "[Insufficient Permissions]", "mem": "n/a"},
        ],
    }
    assert rtx["util"] == rtx["temp"] == rtx["power"] == rtx["power_limit"] == "n/a"
    assert (rtx["mem_used"], rtx["mem_total"]) == (0, 24576 * MIB)
    assert rtx["processes"] == []


def test_smi_fallback_fake_nvidia_smi_used_when_driver_not_loaded_for_nvml(fake_nvml):
    fake_nvml.script([gpu()], init=DRIVER_NOT_LOADED)
    fake_nvml.install_smi(ROWS[:1])
    [event] = fake_nvml.run_agent("gpu", env=fake_nvml.smi_env(library=True))
    assert event["source"] == "nvidia-smi" and len(event["gpus"]) == 1


def test_smi_fallback_fake_nvidia_smi_failing_reports_both_reasons(fake_nvml):
    fake_nvml.install_smi()
    env = fake_nvml.smi_env(exit_code=9)
    [event] = fake_nvml.run_agent("gpu", env=env)
    assert event["available"] is False
    assert event["reason"] == (
        "NVML: NVML Shared Library Not Found; nvidia-smi failed (exit 9): NVIDIA-SMI has failed "
        "because it couldn't communicate with the NVIDIA driver."
    )


def test_smi_fallback_fake_nvidia_smi_no_devices(fake_nvml):
    fake_nvml.install_smi()
    env = fake_nvml.smi_env(exit_code=6, message="No devices were found")
    [event] = fake_nvml.run_agent("gpu", env=env)
    assert event == {"type": "gpu", "available": False,
                     "reason": "nvidia-smi sees no GPU: start the target with GPUs"}


def test_nvml_preferred_over_fake_nvidia_smi(fake_nvml):
    fake_nvml.script([gpu(util=5)])
    fake_nvml.install_smi(ROWS)
    [event] = fake_nvml.run_agent("gpu", env=fake_nvml.smi_env(library=True))
    assert event["source"] == "nvml" and event["gpus"][0]["util"] == 5
    assert not (fake_nvml.workdir / "smi.log").exists()  # nvidia-smi never ran


def test_smi_fallback_fake_nvidia_smi_repeated_samples(fake_nvml):
    fake_nvml.install_smi(ROWS[:1])
    events = fake_nvml.run_agent("gpu", "--interval", "0.01", "--count", "2", env=fake_nvml.smi_env())
    assert [e["source"] for e in events] == ["nvidia-smi", "nvidia-smi"]
    calls = (fake_nvml.workdir / "smi.log").read_text().splitlines()
    # the probe at open is the first sample: one gpu query (and one process query) per sample
    assert sum("--query-gpu=" in c for c in calls) == 2
    assert sum("--query-compute-apps=" in c for c in calls) == 2
    assert all("--format=csv,noheader,nounits" in c for c in calls)
