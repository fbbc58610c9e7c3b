"""CPU cost of the agent's GPU sampler: user+sys CPU time / wall time while sampling.

Runs the agent bundle's Sampler in a subprocess, as the kernel does, against a FAKE
libnvidia-ml.so.1 (tests/fakes/fake_nvml.c; no GPU needed) through the real pynvml, emitting each
sample as a JSON line the way the agent's event stream does. Interpreter start-up and NVML
initialisation are excluded: the clock starts after the first sample. Target: < 1% of one core
at 1 Hz. On a real GPU the driver's own cost per NVML call adds to this; see
scripts/gpu-device-check.sh for the same measurement against real hardware.

    python3 benchmarks/bench_gpu.py [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fakes.nvml import GIB, FakeNvml, build_fake_nvml, gpu  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
from devloop_agent.gpu import Sampler, sample

interval, duration = float(sys.argv[2]), float(sys.argv[3])
out = open(os.devnull, "w")
assert sample()["available"], sample()

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

count = [0]
def emit(event):
    out.write(json.dumps(event) + "\n"); out.flush(); count[0] += 1

cpu0, wall0 = cpu(), time.monotonic()
sampler = Sampler(interval, emit).start()
time.sleep(duration)
sampler.stop()
cpu1, wall1 = cpu(), time.monotonic()
print(json.dumps({"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "samples": count[0]}))
"""


def measure(fake: FakeNvml, gpus: int, hz: float, duration: float) -> dict:
    fake.script([gpu(name="NVIDIA H100 80GB HBM3", util=[10, 60, 95], mem_used=[GIB, 40 * GIB],
                     mem_total=80 * GIB, procs=[(1000 + i, GIB)]) for i in range(gpus)],
                process_names={1000 + i: "python3" for i in range(gpus)})
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(fake.bundle()), str(1.0 / hz), str(duration)],
        env=fake.env(), capture_output=True, text=True, timeout=duration + 120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row (default 10)")
    args = parser.parse_args()
    lib_dir = build_fake_nvml()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fake = FakeNvml(Path(tmp), lib_dir)
        for gpus, hz in ((1, 1), (8, 1), (1, 10), (8, 10)):
            r = measure(fake, gpus, hz, args.duration)
            pct = 100.0 * r["cpu_s"] / r["wall_s"]
            per_sample_ms = 1000.0 * r["cpu_s"] / max(1, r["samples"])
            rows.append((gpus, hz, r["samples"], r["wall_s"], r["cpu_s"], pct, per_sample_ms))
    print("GPU sampler CPU cost (fake NVML through real pynvml; agent process only)")
    print(f"{'GPUs':>4}  {'rate':>6}  {'samples':>7}  {'wall s':>6}  {'CPU s':>6}  "
          f"{'% core':>6}  {'CPU ms/sample':>13}  target")
    for gpus, hz, samples, wall, cpu, pct, per in rows:
        target = ("< 1%: " + ("ok" if pct < 1.0 else "OVER")) if hz == 1 else ""
        print(f"{gpus:>4}  {hz:>4} Hz  {samples:>7}  {wall:>6.1f}  {cpu:>6.3f}  {pct:>5.2f}%  "
              f"{per:>13.2f}  {target}")
    return 0 if all(r[5] < 1.0 for r in rows if r[1] == 1) else 1


if __name__ == "__main__":
    sys.exit(main())
