"""Log throughput and key latency of `devloop up` while a cell streams, headless at 120x40.

Two feeds:
- fake: Output events pushed through the app's `emit` (exactly what a Session calls) as fast as
  the event loop allows, in chunks of N lines (1 line per event is the worst case);
- real: a cell printing 100,000 lines on the `local` profile (the real Session, agent and pipes).

While it streams, a key ('w', watch on/off) is pressed every 20 ms; its latency is the time from
posting the key to the action running. Prints a table. Run: python benchmarks/bench_ui.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import resource
from pathlib import Path

from devloop.core import events as ev
from devloop.ui.app import DevloopApp

SIZE = (120, 40)
LINES = 100_000


class TimedApp(DevloopApp):
    """Records when each 'w' press reaches its action."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.posted: list[float] = []
        self.latencies: list[float] = []

    def action_toggle_watch(self) -> None:
        if self.posted:
            self.latencies.append(time.perf_counter() - self.posted.pop(0))
        super().action_toggle_watch()


async def presser(app: TimedApp, done: asyncio.Event) -> None:
    while not done.is_set():
        app.posted.append(time.perf_counter())
        app.simulate_key("w")
        await asyncio.sleep(0.02)


def summary(lat: list[float]) -> tuple[str, str, str]:
    if not lat:
        return ("-", "-", "-")
    lat = sorted(lat)
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
    return (f"{statistics.median(lat) * 1000:.1f}", f"{p95 * 1000:.1f}", f"{lat[-1] * 1000:.1f}")


async def bench_fake(lines_per_event: int) -> dict:
    app = TimedApp(profile="bench")
    async with app.run_test(size=SIZE) as pilot:
        app.feed([ev.FileParsed("bench.py", False, ({"cell": 0, "title": "spam", "line": 1},)),
                  ev.CellStart(0, 1, "spam")])
        await pilot.pause()
        done = asyncio.Event()
        keys = asyncio.create_task(presser(app, done))
        t0 = time.perf_counter()
        sent = 0
        while sent < LINES:
            n = min(lines_per_event, LINES - sent)
            text = "".join(f"step {sent + k} loss \x1b[32m0.{(sent + k) % 10000:04d}\x1b[0m lr 3e-4 "
                           f"{'x' * 40}\n" for k in range(n))
            app.emit(ev.Output(0, "stdout", text))
            sent += n
            await asyncio.sleep(0)  # a real session yields between pipe reads
        while app.store.ring(0).appended < LINES + 1 or app._inbox:
            await asyncio.sleep(0.005)
        app.flush_log()
        elapsed = time.perf_counter() - t0
        done.set()
        await keys
        await pilot.pause()
        ring = app.store.ring(0)
        return {"feed": f"fake, {lines_per_event} line/event", "lines_s": LINES / elapsed,
                "lat": summary(app.latencies), "presses": len(app.latencies),
                "kept": len(ring)}


async def bench_real() -> dict:
    from devloop.core.config import load_config
    from devloop.core.session import Session

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "spam.py").write_text(
            "# %% spam\n"
            f"for i in range({LINES}):\n"
            "    print(f'step {i} loss \\x1b[32m0.{i % 10000:04d}\\x1b[0m lr 3e-4 ' + 'x' * 40)\n"
        )
        config = load_config(root)
        starts: dict[str, float] = {}

        def factory(name: str, emit: ev.Emit) -> Session:
            def timed(event: ev.Event) -> None:
                if isinstance(event, ev.CellStart):
                    starts["t"] = time.perf_counter()
                emit(event)
            return Session(config, config.profile(name), root / "spam.py", timed)

        app = TimedApp(config=config, profile="local", file="spam.py", session_factory=factory)
        async with app.run_test(size=SIZE) as pilot:
            while "t" not in starts:
                await asyncio.sleep(0.01)
            done = asyncio.Event()
            keys = asyncio.create_task(presser(app, done))
            while app.cell_states.get(0) not in ("ok", "failed"):
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - starts["t"]
            done.set()
            await keys
            await pilot.pause()
            result = {"feed": "real cell, local profile", "lines_s": LINES / elapsed,
                      "lat": summary(app.latencies), "presses": len(app.latencies),
                      "kept": len(app.store.ring(0))}
            await app.run_action("quit")
        return result


async def main() -> None:
    rows = [await bench_fake(1), await bench_fake(100)]
    if "--no-real" not in sys.argv:
        rows.append(await bench_real())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"devloop up log benchmark: {LINES:,} lines, headless {SIZE[0]}x{SIZE[1]}, "
          f"scrollback 10,000 lines/cell, a 'w' key every 20 ms")
    print(f"{'feed':<28} {'lines/s':>10} {'key p50 ms':>11} {'key p95 ms':>11} {'key max ms':>11} "
          f"{'keys':>5} {'lines kept':>11}")
    for r in rows:
        p50, p95, mx = r["lat"]
        print(f"{r['feed']:<28} {r['lines_s']:>10,.0f} {p50:>11} {p95:>11} {mx:>11} {r['presses']:>5} "
              f"{r['kept']:>11,}")
    print(f"peak RSS of this process over all runs: {peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
