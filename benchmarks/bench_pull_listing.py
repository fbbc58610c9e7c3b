"""How long the target's side of `[sync] pull` takes to list a ~20k-file workdir.

The listing runs on every pass (agent/pullsend.py `walk`, the code the agent runs), so a rule
that matches at any depth (`results/`, `*.csv`) must not make a pass slow: the walk prunes
what the sync excludes (here a .venv of 12k files and a gitignored data/ of 4k) and never
stats a file the rules do not pick. Rows: the rules, the files in the tree, the files listed,
the median and min of several runs (ms), for an anchored rule set, an any-depth rule set, and
the same any-depth rules with nothing pruned (what it would cost to walk everything).

    python3 benchmarks/bench_pull_listing.py [--runs 7] [--files 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devloop.agent import pullsend  # noqa: E402
from devloop.core.sync.pull import Puller  # noqa: E402


class _NoTarget:
    needs_sync = True


def build(top: Path, total: int) -> None:
    venv, data = int(total * 0.6), int(total * 0.2)
    rest = total - venv - data
    layout = [(".venv/lib/python3.11/site-packages/pkg{:03d}/m{:03d}.py", venv),
              ("data/shard{:03d}/part{:03d}.parquet", data),
              ("src/mod{:03d}/f{:03d}.py", rest - 200)]
    (top / ".venv").mkdir()
    (top / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for pattern, count in layout:
        for n in range(count):
            path = top / pattern.format(n // 100, n % 100)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    for n in range(100):
        for sub in ("results", f"exp{n % 10}/results"):
            path = top / sub / f"m{n}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("1")
    (top / ".gitignore").write_text("data/\n.venv/\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per row (median reported)")
    parser.add_argument("--files", type=int, default=20000, help="files in the tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        build(top, args.files)
        count = sum(1 for p in top.rglob("*") if p.is_file())
        rows = [("/results/ + figures/*.png", ("/results/", "figures/*.png"), True),
                ("results/ + *.png (any depth)", ("results/", "*.png"), True),
                ("results/ + *.png, nothing pruned", ("results/", "*.png"), False)]
        print(f"{'rules':36} {'tree':>7} {'listed':>7} {'median ms':>10} {'min ms':>8}")
        for label, rules, prune in rows:
            if not prune:  # the last row: no venv to recognise either
                (top / ".venv" / "pyvenv.cfg").unlink(missing_ok=True)
            request = Puller(_NoTarget(), top, rules)._request()
            times, listed = [], 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                files, _ = pullsend.walk(str(top), request["roots"], request["match"],
                                         request["prune"] if prune else [])
                times.append((time.perf_counter() - t0) * 1000)
                listed = len(files)
            print(f"{label:36} {count:>7} {listed:>7} {statistics.median(times):>10.1f} {min(times):>8.1f}")


if __name__ == "__main__":
    main()
