"""What the pre-pass syntax check and the magics cost a pass (issues 18.6, 20.3).

    python3 benchmarks/bench_pass_check.py [--runs 21] [--cells 1,10,50]

Starts the real agent kernel (the bundle, on this interpreter) and times request round trips
for a pass of N fresh cells of ~20 lines each (new text every run, as after an edit): the N
`exec`s alone (a pass before the check existed), the `check` of the N cells (what every pass now
sends first), and the N `exec`s after that check (they reuse the check's compilation). Also one
trivial cell and a cell with magics (IPython's transformer when this interpreter has IPython,
else the agent's own). Prints medians in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devloop.core.agent_bundle import write_bundle  # noqa: E402

CELL = "\n".join(["import math", "def f(x):", "    return math.sqrt(x) + 1"] +
                 [f"v{i} = [f(j) for j in range({i + 3})]" for i in range(17)]) + "\n"
MAGIC_CELL = "%matplotlib inline\nx = 1\n%time y = x + 1\n"


class Kernel:
    def __init__(self, bundle: Path, cwd: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-u", str(bundle), "kernel"], cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.n = 0
        self._until(lambda e: e.get("type") == "ready")

    def _until(self, pred):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if pred(event):
                return event
        raise RuntimeError("the kernel ended")

    def request(self, **req) -> float:
        self.n += 1
        rid = f"b{self.n}"
        req["id"] = rid
        assert self.proc.stdin is not None
        t0 = time.perf_counter()
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        done = self._until(lambda e: e.get("type") == "done" and e.get("id") == rid)
        assert done["ok"], done
        return (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b'{"op":"shutdown"}\n')
        self.proc.stdin.flush()
        self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="round trips per case (median)")
    parser.add_argument("--cells", default="1,10,50", help="cell counts for the check case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_bundle(Path(tmp) / "agent")
        kernel = Kernel(bundle, tmp)
        rows = []
        try:
            def median(make) -> float:
                make()  # warm-up (first IPython import, first compile)
                return statistics.median(make() for _ in range(args.runs))

            rows.append(("exec: one trivial cell", median(
                lambda: kernel.request(op="exec", code="x = 1\n", filename="nb.py", first_line=1))))
            rows.append(("exec: a cell with magics", median(
                lambda: kernel.request(op="exec", code=MAGIC_CELL, filename="nb.py", first_line=1))))
            counter = iter(range(10 ** 9))

            def fresh(n: int) -> list[dict]:
                k = next(counter)
                return [{"code": CELL + f"run_{k} = {i}\n", "filename": "nb.py", "first_line": 1 + 22 * i}
                        for i in range(n)]

            def execs(cells: list[dict]) -> float:
                return sum(kernel.request(op="exec", **c) for c in cells)

            for n in (int(c) for c in args.cells.split(",")):
                rows.append((f"{n} cells: exec only (before)", median(lambda: execs(fresh(n)))))
                rows.append((f"{n} cells: check", median(
                    lambda: kernel.request(op="check", cells=fresh(n)))))

                def check_then_exec() -> float:
                    cells = fresh(n)
                    return kernel.request(op="check", cells=cells) + execs(cells)
                rows.append((f"{n} cells: check + exec (now)", median(check_then_exec)))
        finally:
            kernel.close()
    try:
        import IPython  # noqa: F401
        how = "IPython's transformer"
    except ImportError:
        how = "the agent's own transformer"
    print(f"python {sys.version.split()[0]}, magics through {how}, median of {args.runs} round trips")
    print(f"{'case':36} {'ms':>8}")
    for name, ms in rows:
        print(f"{name:36} {ms:8.2f}")


if __name__ == "__main__":
    main()
