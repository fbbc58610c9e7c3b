"""One vocabulary for numbers shown to people: sizes, durations and counted nouns.

The headless reporter, `devloop sync` and the app all print through these, so a size reads the
same everywhere (`7.6 KiB`, never `7.9 KB` in one place and `7.6 KiB` in another) and a count
agrees with its noun (`1 cell`, `2 cells`).
"""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """Binary units, as `du -h` and the GPU panel count them: `512 B`, `7.6 KiB`, `1.2 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 cell`, `0 cells`, `3 cells` (`many` for irregular nouns)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def human_ms(ms: float) -> str:
    """A duration with its unit: `812 ms`, `3.28 s`, `12m05s`."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes:.0f}m{seconds:02.0f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours:.0f}h{minutes:02.0f}m"
