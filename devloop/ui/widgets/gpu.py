"""GPU gauges: per GPU a utilisation bar, a memory bar, a 60-sample sparkline, temperature, power.

Every field of a sample may be "n/a" (NVML answers NOT_SUPPORTED on some boards): the gauge shows
"n/a" rather than a wrong zero. When the target has no GPU the panel says so, with the reason.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

HISTORY = 60  # samples kept for the sparkline (one a second: a minute)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def bar(fraction: float | None, width: int, style: str) -> Text:
    if fraction is None:
        return Text("╌" * width, style="grey42")
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    return Text.assemble(("█" * full, style), ("░" * (width - full), "grey30"))


def util_style(pct: float | None) -> str:
    if pct is None:
        return "grey62"
    return "green" if pct < 50 else "yellow" if pct < 85 else "red"


def gib(n: float) -> str:
    return f"{n / 2**30:.1f}"


class GpuGauge(Vertical):
    """One GPU: text gauges on top, the utilisation sparkline below."""

    BAR = 12

    def __init__(self, index: int, first: dict | None = None) -> None:
        super().__init__(classes="gpu-gauge")
        self.index = index
        self.history: deque[float] = deque(maxlen=HISTORY)
        self.latest: dict | None = None
        self._painted = False
        if first is not None:
            self.update_sample(first)

    def compose(self) -> ComposeResult:
        yield Static(classes="gpu-text")
        yield Sparkline([], summary_function=max, classes="gpu-spark")

    def on_mount(self) -> None:
        self._painted = True
        self._paint()

    def update_sample(self, gpu: dict) -> None:
        """Record a sample; samples that arrive before the gauge is mounted are painted on mount."""
        util = number(gpu.get("util"))
        self.history.append(util if util is not None else 0.0)
        self.latest = gpu
        if self._painted:
            self._paint()

    def _paint(self) -> None:
        if self.latest is None:
            return
        self.query_one(".gpu-text", Static).update(
            self.render_text(self.latest, number(self.latest.get("util"))))
        self.query_one(".gpu-spark", Sparkline).data = list(self.history)

    def render_text(self, gpu: dict, util: float | None) -> Text:
        name = str(gpu.get("name") or "GPU")
        text = Text.assemble((f"GPU{gpu.get('index', self.index)} ", "bold"), (name, "cyan"), "\n")
        text.append("util ", "grey62")
        text.append_text(bar(None if util is None else util / 100, self.BAR, util_style(util)))
        text.append(f" {util:3.0f}%\n" if util is not None else "  n/a\n")
        used, total = number(gpu.get("mem_used")), number(gpu.get("mem_total"))
        fraction = used / total if used is not None and total else None
        text.append("mem  ", "grey62")
        text.append_text(bar(fraction, self.BAR, "magenta"))
        if used is not None and total:
            text.append(f" {gib(used)}/{gib(total)} GiB\n")
        elif used is not None:
            text.append(f" {gib(used)} GiB\n")
        else:
            text.append("  n/a\n")
        temp = number(gpu.get("temp"))
        power, limit = number(gpu.get("power")), number(gpu.get("power_limit"))
        text.append(f"{temp:.0f}°C" if temp is not None else "n/a °C",
                    "red" if (temp or 0) >= 85 else "white")
        text.append("  ")
        if power is not None:
            text.append(f"{power:.0f}" + (f"/{limit:.0f}" if limit is not None else "") + " W")
        else:
            text.append("n/a W")
        processes = gpu.get("processes")
        if isinstance(processes, (list, tuple)):
            text.append(f"  {len(processes)} proc", "grey62")
        return text


class GpuPanel(VerticalScroll):
    """Gauges for every GPU in the latest sample, or a clear "no GPU" message."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.gauges: dict[int, GpuGauge] = {}
        self.available: bool | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("GPU: waiting for the first sample", style="grey62"), classes="gpu-empty")

    def show_sample(self, available: bool, gpus: tuple[dict, ...], reason: str = "") -> None:
        if not available:
            self._show_none(reason)
            return
        if self.available is not True:
            self.query(".gpu-empty").remove()
            self.available = True
        for position, gpu in enumerate(gpus):
            key = int(number(gpu.get("index")) or position)
            gauge = self.gauges.get(key)
            if gauge is None:
                gauge = self.gauges[key] = GpuGauge(key, first=gpu)
                self.mount(gauge)
            else:
                gauge.update_sample(gpu)

    def reset(self) -> None:
        """Back to "waiting for the first sample" (another profile: the old GPUs are not its)."""
        for gauge in self.gauges.values():
            gauge.remove()
        self.gauges.clear()
        self.query(".gpu-empty").remove()
        self.available = None
        self.mount(Static(Text("GPU: waiting for the first sample", style="grey62"), classes="gpu-empty"))

    def _show_none(self, reason: str) -> None:
        if self.available is False:
            return
        self.available = False
        for gauge in self.gauges.values():
            gauge.remove()
        self.gauges.clear()
        self.query(".gpu-empty").remove()
        message = Text.assemble(
            ("No GPU on this target\n", "bold yellow"),
            (reason or "no NVIDIA driver or device was found", "grey62"),
            ("\n\nCode runs on the CPU; pick a GPU profile with ", "grey62"),
            ("t", "bold"),
            (".", "grey62"),
        )
        self.mount(Static(message, classes="gpu-empty gpu-none"))
