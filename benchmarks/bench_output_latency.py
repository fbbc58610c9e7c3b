"""How soon a progress line's redraw reaches a `devloop run --json` reader (issue 18: within 200 ms).

    python3 benchmarks/bench_output_latency.py [--runs 3] [--draws 40] [--interval 0.1]

A cell redraws a tqdm-style line with \\r (flushed, no newline) `--draws` times, `--interval`
seconds apart; each draw carries the wall time it was written at. The benchmark reads the JSON
lines as they come (a pipe) and takes, per `output` event, arrival time minus the latest write
time it carries. Local profile, temporary project. Prints per run the median, 95th percentile
and maximum, then the median of each over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CELL = """\
# %% progress
import sys, time
for i in range({draws}):
    sys.stderr.write(f"\\r{{i:4d}}/{draws} |{{'#' * (i % 20):20s}}| t={{time.time():.6f}}")
    sys.stderr.flush()
    time.sleep({interval})
sys.stderr.write("\\n")
"""


def one_run(draws: int, interval: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bar.py").write_text(CELL.format(draws=draws, interval=interval))
        proc = subprocess.Popen([sys.executable, "-m", "devloop.cli", "run", "--json", "bar.py"],
                                cwd=tmp, stdout=subprocess.PIPE, text=True, bufsize=1,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        delays = []
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            event = json.loads(line)
            if event.get("event") == "output" and "t=" in event.get("text", ""):
                written = float(event["text"].rsplit("t=", 1)[1].split()[0].rstrip("\r\n"))
                delays.append((now - written) * 1000)
        proc.wait()
        return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    rows = []
    print(f"{'run':>4} {'events':>7} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for run in range(1, args.runs + 1):
        delays = sorted(one_run(args.draws, args.interval))
        p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
        rows.append((statistics.median(delays), p95, delays[-1]))
        print(f"{run:>4} {len(delays):>7} {rows[-1][0]:>10.1f} {p95:>8.1f} {delays[-1]:>8.1f}")
    print(f"{'all':>4} {'':>7} {statistics.median(r[0] for r in rows):>10.1f} "
          f"{statistics.median(r[1] for r in rows):>8.1f} {statistics.median(r[2] for r in rows):>8.1f}")


if __name__ == "__main__":
    main()
