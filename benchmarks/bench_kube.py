"""Kubernetes target timings on the loopback test cluster (tests/infra/kube-up.sh).

    KUBECONFIG=... python3 benchmarks/bench_kube.py [--starts 5] [--execs 20] [--saves 30]

1. pod start -> agent ready: create the pod, wait for Running, probe python, copy the agent in
   (every new pod starts empty), start the kernel and wait for its `ready` event.
2. one exec round trip: spawn `true` through the relay and collect its exit code.
3. save -> first output through exec: benchmarks/bench_loop.py on a `kube` profile
   (the watcher, the kept sync receiver over exec, the kernel over exec).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devloop.core.config import load_config  # noqa: E402
from devloop.core.kernel import KernelClient  # noqa: E402
from devloop.core.targets.kubernetes import KubernetesTarget  # noqa: E402

PROFILE = "kind: kubernetes\nimage: devloop-test:hostpy\nnamespace: default\nnetwork: host\n"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def row(name: str, values: list[float]) -> str:
    return (f"{name:<34} {len(values):>4} {statistics.median(values):>9.1f} {pct(values, 0.95):>9.1f} "
            f"{max(values):>9.1f}")


async def starts(project: Path, n: int, execs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"pod Running + agent in place": [], "kernel ready (after start)": [],
                                   "pod start -> agent ready": [], "exec round trip (true)": []}
    config = load_config(project)
    for i in range(n):
        target = KubernetesTarget(config.profile("kube"), config)
        t0 = time.perf_counter()
        try:
            info = await target.start()
            t1 = time.perf_counter()
            channel = await target.spawn(target.agent_argv("kernel"), cwd=info.workdir)
            kernel = KernelClient(channel, on_output=lambda *a: None, on_gpu=lambda *a: None,
                                  on_log=lambda *a: None)
            await kernel.start()
            t2 = time.perf_counter()
            out["pod Running + agent in place"].append((t1 - t0) * 1000)
            out["kernel ready (after start)"].append((t2 - t1) * 1000)
            out["pod start -> agent ready"].append((t2 - t0) * 1000)
            if i == 0:
                for _ in range(execs):
                    e0 = time.perf_counter()
                    ch = await target.spawn(["true"])
                    await ch.close_stdin()
                    await ch.wait()
                    out["exec round trip (true)"].append((time.perf_counter() - e0) * 1000)
            await kernel.shutdown()
        finally:
            await target.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--execs", type=int, default=20)
    parser.add_argument("--saves", type=int, default=30)
    args = parser.parse_args()
    if not os.environ.get("KUBECONFIG"):
        print("set KUBECONFIG (the last line of tests/infra/kube-up.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-kube-") as tmp:
        project = Path(tmp)
        (project / "devloop.toml").write_text('[project]\nname = "bench-kube"\n')
        (project / "profiles").mkdir()
        (project / "profiles" / "kube.yaml").write_text(PROFILE)
        results = asyncio.run(starts(project, args.starts, args.execs))
        print(f"{'kubernetes target (ms)':<34} {'n':>4} {'p50':>9} {'p95':>9} {'max':>9}")
        for name, values in results.items():
            if values:
                print(row(name, values))
        print(flush=True)
        loop = subprocess.run([sys.executable, str(Path(__file__).parent / "bench_loop.py"), "--profile", "kube",
                               "--project", str(project), "--saves", str(args.saves)], text=True)
        return loop.returncode


if __name__ == "__main__":
    sys.exit(main())
