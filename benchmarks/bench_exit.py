"""How long `devloop run` takes to exit after its `run_done`, with and without a worker pool.

    python3 benchmarks/bench_exit.py [--runs 5]

Two one-cell files on the built-in `local` profile: a print, and joblib `Parallel(n_jobs=2)`
(the pool and its resource tracker must end with the kernel, cleanly). Each runs `--runs` times
as `devloop run --json`; the time from the `run_done` line to the process's exit is measured,
and for comparison the time `python3 file.py` spends after its last line until it exits (its own
exit hooks end the pool too). Prints medians and how many runs printed anything after the cell
(a false "LokyProcess failed" traceback was the symptom). The goal: within ~0.5 s of python's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "print": '# %%\nprint("done")\n',
    "joblib n_jobs=2": ("# %%\nimport math\nfrom joblib import Parallel, delayed\n"
                        "r = Parallel(n_jobs=2)(delayed(math.sqrt)(i) for i in range(10))\n"
                        'print("done")\n'),
}


def after_last_line(cmd: list[str], cwd: Path, marker: bytes) -> tuple[float, bool]:
    """Seconds from the line holding `marker` to the exit; whether anything spurious came after."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    seen_at = None
    extra = False
    for line in proc.stdout:
        if marker in line and seen_at is None:
            seen_at = time.monotonic()
        elif seen_at is not None and (b'"output"' in line or b"Loky" in line):
            extra = True
    err = proc.stderr.read() if proc.stderr else b""
    proc.wait()
    extra = extra or b"Traceback" in err
    return (time.monotonic() - seen_at if seen_at else float("nan")), extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (the median is shown)")
    args = parser.parse_args()
    print(f"{'case':<18} {'devloop run: s after run_done':>30} {'python: s after last line':>27} {'spurious':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in CASES.items():
            root = Path(tmp) / name.split()[0]
            root.mkdir()
            (root / "f.py").write_text(source)
            dl, py, bad = [], [], 0
            for _ in range(args.runs):
                t, extra = after_last_line([sys.executable, "-m", "devloop.cli", "run", "f.py", "--json"], root,
                                           b'"run_done"')
                dl.append(t)
                bad += extra
                py.append(after_last_line([sys.executable, "-u", "f.py"], root, b"done")[0])
            print(f"{name:<18} {statistics.median(dl):>30.2f} {statistics.median(py):>27.2f} {bad:>5}/{args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
