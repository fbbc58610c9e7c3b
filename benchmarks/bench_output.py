"""Heavy output through `devloop run`: readable text vs --json vs plain Python.

    python3 benchmarks/bench_output.py [--mb 20] [--runs 3] [--cases long,progress,lines]

Three cells, each printing about `--mb` MB to stdout: one line that never ends (a 64 KiB write
at a time), a tqdm-style bar redrawn with \\r (never a newline until the end), and ordinary
short lines. Each runs in a temporary project on the built-in `local` profile, output to
/dev/null, as `devloop run`, `devloop run --json` and `python3 cell.py`. Prints the median wall
time of `--runs` runs per case and mode. The text mode's cost must not grow with the length of
an unfinished line: its column should stay within a small factor of --json's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "long": """\
# %% one line that never ends
import sys
chunk = "x" * 65536
for _ in range({n} * 16):
    sys.stdout.write(chunk)
    sys.stdout.flush()
""",
    "progress": """\
# %% a progress bar redrawn in place
import sys
total = {n} * 1024 * 1024 // 100
for i in range(total):
    pct = 100 * i // total
    sys.stdout.write("\\r%3d%%|%-50s| %d/%d [00:01<00:02, 1234.56it/s]" % (pct, "#" * (pct // 2), i, total))
    if i % 512 == 0:
        sys.stdout.flush()
sys.stdout.write("\\n")
""",
    "lines": """\
# %% ordinary lines
import sys
line = "step %d loss 0.12345 acc 0.98765 lr 0.0001 " + "." * 40 + "\\n"
for i in range({n} * 1024 * 1024 // 100):
    sys.stdout.write(line % i)
""",
}


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=20, help="MB each cell prints (default 20)")
    ap.add_argument("--runs", type=int, default=3, help="runs per case and mode (median)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    args = ap.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GITHUB_ACTIONS", None)
    devloop = [sys.executable, "-c", "import sys; from devloop.cli import main; sys.exit(main())"]
    modes = {
        "text": devloop + ["run"],
        "--json": devloop + ["run", "--json"],
        "python": [sys.executable, "cell.py"],
    }
    print(f"{args.mb} MB per case, median of {args.runs} runs (seconds)")
    print(f"{'case':10s}" + "".join(f"{m:>10s}" for m in modes) + f"{'text/json':>11s}")
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        with tempfile.TemporaryDirectory(prefix="devloop-bench-output-") as tmp:
            project = Path(tmp)
            (project / "cell.py").write_text(CASES[case].format(n=args.mb))
            (project / "devloop.toml").write_text(
                '[project]\nname = "bench-output"\nentry = "cell.py"\nprofile = "local"\n')
            medians = {}
            for mode, argv in modes.items():
                medians[mode] = statistics.median(timed(argv, project, env) for _ in range(args.runs))
            ratio = medians["text"] / medians["--json"] if medians["--json"] else float("nan")
            print(f"{case:10s}" + "".join(f"{medians[m]:10.2f}" for m in modes) + f"{ratio:11.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
