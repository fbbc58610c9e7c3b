"""GPU figures on the client side: agent `gpu` events -> GpuSample, a run's summary, text lines.

The agent (devloop/agent/gpu.py) samples inside the target; this module turns what arrives into
typed events and the end-of-run `gpu_summary` (peak memory, mean and peak utilisation per GPU),
and formats both for the headless reporter and `devloop gpu`. A value a device does not report
is the string "n/a" throughout and is left out of means and peaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from devloop.core.events import GpuSample, GpuSummary

NA = "n/a"
GPU_FIELDS = ("index", "name", "uuid", "util", "mem_used", "mem_total", "temp", "power",
              "power_limit")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _gpu_from_agent(data: Mapping[str, Any]) -> dict[str, Any]:
    gpu = {key: data.get(key, NA) for key in GPU_FIELDS}
    processes = data.get("processes")
    gpu["processes"] = [
        {"pid": p.get("pid", NA), "name": p.get("name", NA), "mem": p.get("mem", NA)}
        for p in (processes if isinstance(processes, list) else [])
        if isinstance(p, Mapping)
    ]
    return gpu


def gpu_sample_from_agent(data: Mapping[str, Any]) -> GpuSample:
    """The agent's `gpu` event dict as a GpuSample (missing fields become "n/a")."""
    if not data.get("available"):
        return GpuSample(available=False, reason=str(data.get("reason") or "no GPU information"))
    gpus = data.get("gpus") if isinstance(data.get("gpus"), list) else []
    return GpuSample(
        available=True,
        gpus=tuple(_gpu_from_agent(g) for g in gpus if isinstance(g, Mapping)),
        source=str(data.get("source", "")),
    )


@dataclass
class _Track:
    index: Any
    name: Any
    uuid: Any
    samples: int = 0
    util_sum: float = 0.0
    util_count: int = 0
    util_peak: float | None = None
    mem_peak: float | None = None
    mem_total: Any = NA
    power_peak: float | None = None
    temp_peak: float | None = None


def _peak(current: float | None, value: Any) -> float | None:
    number = _number(value)
    if number is None:
        return current
    return number if current is None or number > current else current


def _index_order(gpu: Mapping[str, Any]) -> tuple[int, int]:
    index = gpu.get("index")
    return (0, index) if isinstance(index, int) else (1, 0)


class GpuStats:
    """Accumulates GpuSample events into a per-GPU run summary (keyed by UUID, else index)."""

    def __init__(self) -> None:
        self._tracks: dict[Any, _Track] = {}
        self.samples = 0
        self.unavailable_reason = ""

    def add(self, sample: GpuSample) -> None:
        if not sample.available:
            if not self._tracks:
                self.unavailable_reason = sample.reason
            return
        self.samples += 1
        for gpu in sample.gpus:
            uuid = gpu.get("uuid", NA)
            key = uuid if isinstance(uuid, str) and uuid not in ("", NA) else ("index", gpu.get("index"))
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = _Track(gpu.get("index", NA), gpu.get("name", NA), uuid)
            track.samples += 1
            util = _number(gpu.get("util"))
            if util is not None:
                track.util_sum += util
                track.util_count += 1
            track.util_peak = _peak(track.util_peak, util)
            track.mem_peak = _peak(track.mem_peak, gpu.get("mem_used"))
            if _number(gpu.get("mem_total")) is not None:
                track.mem_total = gpu["mem_total"]
            track.power_peak = _peak(track.power_peak, gpu.get("power"))
            track.temp_peak = _peak(track.temp_peak, gpu.get("temp"))

    def summary(self) -> tuple[dict[str, Any], ...]:
        """One dict per GPU, in index order: index, name, uuid, samples, util_mean, util_peak,
        mem_peak, mem_total, power_peak, temp_peak ("n/a" where no sample had the value)."""
        def value(v: float | None) -> Any:
            return NA if v is None else v

        out = []
        for track in self._tracks.values():
            mean = round(track.util_sum / track.util_count, 1) if track.util_count else None
            out.append({
                "index": track.index,
                "name": track.name,
                "uuid": track.uuid,
                "samples": track.samples,
                "util_mean": value(mean),
                "util_peak": value(track.util_peak),
                "mem_peak": value(track.mem_peak),
                "mem_total": track.mem_total,
                "power_peak": value(track.power_peak),
                "temp_peak": value(track.temp_peak),
            })
        out.sort(key=_index_order)
        return tuple(out)

    def event(self) -> GpuSummary:
        """The `gpu_summary` event for the end of `devloop run`."""
        return GpuSummary(gpus=self.summary())


# -- formatting (front ends) ----------------------------------------------------------------


def format_bytes(value: Any) -> str:
    """Bytes as a short binary size ("1.5 GiB"); "n/a" stays "n/a"."""
    number = _number(value)
    if number is None:
        return NA
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024:
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} TiB"


def _fmt(value: Any, unit: str, digits: int = 0) -> str:
    number = _number(value)
    if number is None:
        return NA
    return f"{number:.{digits}f}{unit}"


def memory_fraction(gpu: Mapping[str, Any]) -> float | None:
    """Used / total memory in [0, 1], None when either is unknown (for gauges)."""
    used, total = _number(gpu.get("mem_used")), _number(gpu.get("mem_total"))
    if used is None or not total:
        return None
    return max(0.0, min(1.0, used / total))


def format_memory(gpu: Mapping[str, Any]) -> str:
    return f"{format_bytes(gpu.get('mem_used'))} / {format_bytes(gpu.get('mem_total'))}"


def format_power(gpu: Mapping[str, Any]) -> str:
    power, limit = gpu.get("power"), gpu.get("power_limit")
    if _number(limit) is None:
        return _fmt(power, " W")
    return f"{_fmt(power, '')} / {_fmt(limit, ' W')}"


def format_sample(sample: GpuSample, *, processes: bool = True) -> list[str]:
    """A readable table of one sample (what `devloop gpu` prints), or the reason there is none."""
    if not sample.available:
        return [f"no GPU: {sample.reason}"]
    rows = [("GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER")]
    extra: dict[int, list[str]] = {}
    for n, gpu in enumerate(sample.gpus):
        rows.append((
            str(gpu.get("index", NA)), str(gpu.get("name", NA)), _fmt(gpu.get("util"), "%"),
            format_memory(gpu), _fmt(gpu.get("temp"), "°C"), format_power(gpu),
        ))
        if processes:
            extra[n + 1] = [
                f"    pid {p.get('pid')}  {p.get('name', NA)}  {format_bytes(p.get('mem'))}"
                for p in gpu.get("processes") or ()
            ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 4}  # numbers read better right-aligned
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        lines.extend(extra.get(n, ()))
    lines.append(f"(source: {sample.source})" if sample.source else "")
    return [line for line in lines if line]


def format_summary(summary: Iterable[Mapping[str, Any]], reason: str = "") -> list[str]:
    """Human lines for a run's GPU summary, one per GPU; `reason` when there were no samples."""
    lines = []
    for gpu in summary:
        lines.append(
            f"GPU {gpu.get('index', NA)} {gpu.get('name', NA)}: "
            f"peak memory {format_bytes(gpu.get('mem_peak'))} of {format_bytes(gpu.get('mem_total'))}, "
            f"utilisation mean {_fmt(gpu.get('util_mean'), '%', 1)} peak {_fmt(gpu.get('util_peak'), '%')}, "
            f"{gpu.get('samples', 0)} samples"
        )
    if not lines:
        lines.append(f"GPU: no samples ({reason})" if reason else "GPU: no samples")
    return lines
