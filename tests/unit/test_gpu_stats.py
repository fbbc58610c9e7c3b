"""GpuStats summary math, agent dict -> GpuSample, and the text formatting (pure; no GPU needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from devloop.core.events import GpuSample, GpuSummary
from devloop.core.gpu import (
    GpuStats,
    format_bytes,
    format_sample,
    format_summary,
    gpu_sample_from_agent,
    memory_fraction,
)

GIB = 1024**3


def agent_gpu(index=0, uuid="GPU-a", util=0, mem_used=0, **extra):
    g = {"index": index, "name": "NVIDIA H100 80GB HBM3", "uuid": uuid, "util": util,
         "mem_used": mem_used, "mem_total": 80 * GIB, "temp": 40, "power": 100.0,
         "power_limit": 700.0, "processes": []}
    g.update(extra)
    return g


def sample(*gpus):
    return gpu_sample_from_agent({"type": "gpu", "available": True, "source": "nvml",
                                  "gpus": list(gpus)})


def test_summary_peak_memory_mean_and_peak_util_per_gpu():
    stats = GpuStats()
    stats.add(sample(agent_gpu(0, "GPU-a", 10, 1 * GIB), agent_gpu(1, "GPU-b", 0, 0)))
    stats.add(sample(agent_gpu(0, "GPU-a", 90, 5 * GIB, power=350.5, temp=71),
                     agent_gpu(1, "GPU-b", 20, 2 * GIB)))
    stats.add(sample(agent_gpu(0, "GPU-a", 50, 3 * GIB), agent_gpu(1, "GPU-b", 40, 1 * GIB)))
    a, b = stats.summary()
    assert a == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-a", "samples": 3,
                 "util_mean": 50.0, "util_peak": 90, "mem_peak": 5 * GIB, "mem_total": 80 * GIB,
                 "power_peak": 350.5, "temp_peak": 71}
    assert (b["util_mean"], b["util_peak"], b["mem_peak"], b["samples"]) == (20.0, 40, 2 * GIB, 3)
    assert stats.samples == 3
    assert stats.event() == GpuSummary(gpus=(a, b))
    assert stats.event().to_json()["event"] == "gpu_summary"


def test_summary_skips_na_values_and_says_na_when_never_reported():
    stats = GpuStats()
    stats.add(sample(agent_gpu(util="n/a", mem_used=GIB, power="n/a", temp="n/a")))
    stats.add(sample(agent_gpu(util=30, mem_used="n/a", power="n/a", temp="n/a")))
    [g] = stats.summary()
    assert g["util_mean"] == 30.0 and g["util_peak"] == 30  # the n/a sample is not a 0
    assert g["mem_peak"] == GIB
    assert g["power_peak"] == "n/a" and g["temp_peak"] == "n/a"
    assert g["samples"] == 2


def test_summary_keys_by_uuid_else_index_and_sorts_by_index():
    stats = GpuStats()
    stats.add(sample(agent_gpu(1, "n/a", 5), agent_gpu(0, "n/a", 7)))
    stats.add(sample(agent_gpu(1, "n/a", 15), agent_gpu(0, "n/a", 9)))
    summary = stats.summary()
    assert [g["index"] for g in summary] == [0, 1]
    assert [g["util_mean"] for g in summary] == [8.0, 10.0]


def test_unavailable_samples_count_nothing_but_keep_the_reason():
    stats = GpuStats()
    stats.add(gpu_sample_from_agent({"type": "gpu", "available": False, "reason": "no driver"}))
    assert stats.summary() == () and stats.samples == 0
    assert stats.unavailable_reason == "no driver"
    assert format_summary(stats.summary(), stats.unavailable_reason) == ["GPU: no samples (no driver)"]


@given(st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=50),
       st.lists(st.integers(min_value=0, max_value=80 * GIB), min_size=1, max_size=50))
def test_summary_matches_plain_mean_and_max(utils, mems):
    stats = GpuStats()
    n = max(len(utils), len(mems))
    for i in range(n):
        stats.add(sample(agent_gpu(util=utils[i % len(utils)], mem_used=mems[i % len(mems)])))
    [g] = stats.summary()
    seen_utils = [utils[i % len(utils)] for i in range(n)]
    seen_mems = [mems[i % len(mems)] for i in range(n)]
    assert g["util_mean"] == round(sum(seen_utils) / n, 1)
    assert g["util_peak"] == max(seen_utils)
    assert g["mem_peak"] == max(seen_mems)
    assert g["samples"] == n


def test_gpu_sample_from_agent_fills_missing_fields_with_na():
    s = gpu_sample_from_agent({"type": "gpu", "available": True, "source": "nvidia-smi",
                               "gpus": [{"index": 3, "processes": [{"pid": 1}]}]})
    assert s.available and s.source == "nvidia-smi"
    [g] = s.gpus
    assert g["index"] == 3 and g["util"] == "n/a" and g["mem_total"] == "n/a"
    assert g["processes"] == [{"pid": 1, "name": "n/a", "mem": "n/a"}]
    assert gpu_sample_from_agent({"type": "gpu", "available": False}) == GpuSample(
        available=False, reason="no GPU information")


def test_format_helpers():
    assert format_bytes(0) == "0 B"
    assert format_bytes(1536 * 1024 * 1024) == "1.5 GiB"
    assert format_bytes("n/a") == "n/a"
    assert memory_fraction({"mem_used": 20, "mem_total": 80}) == 0.25
    assert memory_fraction({"mem_used": "n/a", "mem_total": 80}) is None
    lines = format_sample(sample(agent_gpu(0, util=37, mem_used=12 * GIB,
                                           processes=[{"pid": 42, "name": "python3", "mem": GIB}])))
    assert lines[0].split() == ["GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER"]
    assert "37%" in lines[1] and "12.0 GiB / 80.0 GiB" in lines[1] and "40°C" in lines[1]
    assert "100 / 700 W" in lines[1]
    assert lines[2].split() == ["pid", "42", "python3", "1.0", "GiB"]
    assert lines[-1] == "(source: nvml)"
    assert format_sample(GpuSample(available=False, reason="NVML: Driver Not Loaded")) == [
        "no GPU: NVML: Driver Not Loaded"]
    [line] = format_summary([{"index": 0, "name": "H100", "samples": 3, "util_mean": 50.0,
                              "util_peak": 90, "mem_peak": 5 * GIB, "mem_total": 80 * GIB}])
    assert line == ("GPU 0 H100: peak memory 5.0 GiB of 80.0 GiB, utilisation mean 50.0% peak 90%, "
                    "3 samples")
