"""Save -> first output of the rerun cell, through the real watcher, sync and kernel.

    python3 benchmarks/bench_loop.py [--profile P] [--project DIR] [--saves 30]

Creates a three-cell file (the first cell sleeps 3 s, standing in for a slow data load) in a
temporary project (or DIR, whose profiles/ are used), runs it once, then edits the LAST cell N
times. For each save it measures the time from the file write to the first output of the rerun
cell, and the whole rerun (write -> run_done). Prints p50/p95/max and the debounce in use.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devloop.core import events as ev  # noqa: E402
from devloop.core.config import load_config  # noqa: E402
from devloop.core.session import Session  # noqa: E402

SOURCE = """\
# %% slow load
import time
time.sleep(3)
data = list(range(1000))

# %% model
total = sum(data)

# %% report
print("report {n}", total)
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def bench(project: Path, profile: str | None, saves: int) -> None:
    f = project / "bench_nb.py"
    f.write_text(SOURCE.format(n=0))
    config = load_config(project)
    first_output: asyncio.Future | None = None
    run_done: asyncio.Future | None = None

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.Output) and event.cell == 2 and first_output and not first_output.done():
            first_output.set_result(time.perf_counter())
        if isinstance(event, ev.RunDone) and run_done and not run_done.done():
            run_done.set_result((time.perf_counter(), event))

    session = Session(config, config.profile(profile), f, emit)
    t0 = time.perf_counter()
    await session.start()
    t_start = time.perf_counter() - t0
    loop = asyncio.get_running_loop()
    first_output, run_done = loop.create_future(), loop.create_future()
    t0 = time.perf_counter()
    await session.run_all()
    t_first_pass = time.perf_counter() - t0
    stop = asyncio.Event()
    watcher = asyncio.create_task(session.watch(stop))
    await asyncio.sleep(0.5)
    to_output: list[float] = []
    to_done: list[float] = []
    cells_rerun: set[int] = set()
    try:
        for n in range(1, saves + 1):
            first_output, run_done = loop.create_future(), loop.create_future()
            t_write = time.perf_counter()
            f.write_text(SOURCE.format(n=n))
            t_out = await asyncio.wait_for(first_output, 30)
            t_end, done = await asyncio.wait_for(run_done, 30)
            cells_rerun.add(done.cells_run)
            to_output.append((t_out - t_write) * 1000)
            to_done.append((t_end - t_write) * 1000)
            await asyncio.sleep(0.15)
    finally:
        stop.set()
        watcher.cancel()
        await session.close()

    debounce = config.sync.debounce_ms
    print(f"profile: {session.profile.name} ({session.profile.kind}); debounce {debounce} ms; {saves} saves")
    print(f"start (target + kernel): {t_start * 1000:.0f} ms; first full pass (incl. the 3 s cell): {t_first_pass:.2f} s")
    print()
    print(f"{'measure':<44}{'p50':>10}{'p95':>10}{'max':>10}")
    print(f"{'save -> first output of the edited cell (ms)':<44}{pct(to_output, .5):>10.1f}{pct(to_output, .95):>10.1f}{max(to_output):>10.1f}")
    print(f"{'save -> rerun finished (ms)':<44}{pct(to_done, .5):>10.1f}{pct(to_done, .95):>10.1f}{max(to_done):>10.1f}")
    print()
    print(f"cells rerun per save: {sorted(cells_rerun)} (the 3 s first cell never reruns: "
          f"median rerun {statistics.median(to_done) / 1000:.3f} s vs 3 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="profile to run on (default: the built-in local)")
    parser.add_argument("--project", type=Path, help="project folder (its devloop.toml / profiles/); default: a temp folder")
    parser.add_argument("--saves", type=int, default=30, help="how many saves to time (default 30)")
    args = parser.parse_args()
    if args.project:
        asyncio.run(bench(args.project.resolve(), args.profile, args.saves))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(bench(Path(tmp), args.profile, args.saves))


if __name__ == "__main__":
    main()
