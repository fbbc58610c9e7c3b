"""What run records cost: appending one (flush + fsync), and listing them when the log is full.

    python3 benchmarks/bench_runs.py [--runs 5] [--cells 20]

In a temporary project: the median time of `store.append` for a record of `--cells` cells (on an
empty log and on a log about to rotate), the time to fill the log to its bound (4 MiB x 5 files),
and the median wall time of `devloop runs` (the newest 20) and `devloop runs show PREFIX` on that
full log, as a user runs them. Prints one table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devloop.core.runs import store  # noqa: E402


def record(cells: int) -> dict:
    return {
        "run_id": str(uuid.uuid4()), "session_id": uuid.uuid4().hex, "mode": "session",
        "start": "2026-11-30T09:00:00.000Z", "end": "2026-11-30T09:00:41.000Z", "ms": 41000.0,
        "profile": "gpu", "target": {"kind": "docker", "host": "box", "id": "3f2a9c1d"},
        "image": {"ref": "registry.example.com/ml/train:1", "digest": "sha256:" + "ab" * 32},
        "git": {"commit": "c" * 40, "dirty": True, "diff_sha256": "d" * 64}, "devloop_version": "0.1.0",
        "file": "train.py", "script": False, "reason": "changed", "ok": True, "exit_code": 0,
        "cells": [{"index": i, "title": f"cell {i}", "line": 1 + 10 * i, "hash": "e" * 64, "state": "ok",
                   "ms": 12.5} for i in range(cells)],
        "errors": [], "gpu": [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1", "samples": 40,
                               "mem_peak": 6.1e10, "mem_total": 8.5e10, "util_mean": 71.2, "util_peak": 99}],
        "gpu_note": "", "sync": {"syncs": 1, "files": 3, "bytes": 4096, "deleted": 0, "ms": 12.0},
    }


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cells", type=int, default=20)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "devloop.toml").write_text('[project]\nname = "bench"\n')
        cli = [sys.executable, "-m", "devloop.cli"]
        empty = median_ms(lambda: subprocess.run(cli + ["runs"], cwd=root, check=True, capture_output=True), args.runs)
        size = len(str(record(args.cells)))
        rows.append(("record size", f"{size / 1024:.1f} KiB"))
        rows.append(("append, empty log", f"{median_ms(lambda: store.append(root, record(args.cells)), args.runs):.2f} ms"))
        t0 = time.perf_counter()
        appended = 0
        while not store.runs_path(root).with_name("runs.jsonl.4").exists():
            store.append(root, record(args.cells))
            appended += 1
        fill = time.perf_counter() - t0
        rows.append(("fill to the bound", f"{appended} records in {fill:.1f} s ({fill / appended * 1000:.2f} ms each)"))
        rows.append(("append, full log", f"{median_ms(lambda: store.append(root, record(args.cells)), args.runs):.2f} ms"))
        kept = store.read_all(root)
        rows.append(("records kept", f"{len(kept)}"))
        rows.append(("read_all, full log", f"{median_ms(lambda: store.read_all(root), args.runs):.1f} ms"))
        prefix = kept[-1]["run_id"][:8]
        rows.append(("devloop runs, no log yet (wall)", f"{empty:.0f} ms"))
        for label, argv in (("devloop runs", cli + ["runs"]), ("devloop runs show ID", cli + ["runs", "show", prefix])):
            ms = median_ms(lambda: subprocess.run(argv, cwd=root, check=True, capture_output=True), args.runs)
            rows.append((label + " (wall)", f"{ms:.0f} ms"))
    width = max(len(k) for k, _ in rows)
    print(f"{'what':<{width}}  median of {args.runs}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
