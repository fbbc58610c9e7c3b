"""A 1-megapixel matplotlib figure: from `plt.show()` on the target to the TUI showing it.

`devloop run --json` on a notebook whose cells each draw a 1000x1000 figure and call
`plt.show()`; each cell prints the target's clock right before `plt.show()` (loopback: the same
clock as here). Measured per figure:
  show -> event   the agent renders the PNG (Agg), base64, the event crosses the link, devloop
                  saves it under .devloop/outputs and prints the display event (read here on arrival)
  rows (P)        what the TUI does with it for protocol P (ui/widgets/image.py `inline_rows`, on
                  a thread there): half blocks always; Kitty adds reading the PNG and its placeholder
                  rows; Sixel shows half blocks first, then adds scaling and encoding one band per
                  cell row (72 x 16 cells of 10x20) and swaps them in
  total (P)       show -> the log rows ready (target: <= 300 ms p50 on loopback SSH); for Sixel
                  `shown (sixel)` is the half blocks on screen, `total (sixel)` the sharp bands
  text after      show -> the cell's next printed line arriving (an image never blocks the log)
On the SSH profile (tests/infra/sshd-up.sh, the kernel run by this venv's Python, which has
matplotlib) and on the local profile for reference.

    python3 benchmarks/bench_figures.py [--runs 15] [--skip-ssh]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTOCOLS = ("halfblock", "kitty", "sixel")
sys.path.insert(0, str(REPO))

CELL = """# %% figure {i}
fig = plt.figure(figsize=(10, 10), dpi=100)
ax = fig.add_subplot()
ax.plot(np.cumsum(rng.standard_normal(5000)))
ax.scatter(rng.random(2000), rng.random(2000) * 50, s=4)
print("T0", time.time(), flush=True)
plt.show()
print("after", {i}, flush=True)
"""


def notebook(runs: int) -> str:
    head = "# %% setup\nimport time\nimport numpy as np\nimport matplotlib.pyplot as plt\nrng = np.random.default_rng(0)\n"
    return head + "".join(CELL.format(i=i) for i in range(runs))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure(project: Path, profile: str | None, runs: int) -> dict[str, list[float]]:
    from devloop.ui.widgets import graphics
    from devloop.ui.widgets.image import INLINE_MAX_COLS, INLINE_MAX_ROWS, fit, inline_rows, sixel_rows

    argv = [sys.executable, "-m", "devloop.cli", "run", "nb.py", "--json"]
    if profile:
        argv += ["--profile", profile]
    proc = subprocess.Popen(argv, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    out: dict[str, list[float]] = {"show -> event": [], "text after": []}
    for protocol in PROTOCOLS:
        out[f"rows ({protocol})"], out[f"total ({protocol})"] = [], []
    t0: float | None = None
    buf = b""
    deadline = time.monotonic() + 600
    while True:
        if not select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError("devloop run did not finish")
        chunk = os.read(proc.stdout.fileno(), 1 << 20)
        now = time.time()
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.startswith(b"{"):
                continue
            event = json.loads(line)
            if event["event"] == "output" and event["text"].startswith("T0 "):
                t0 = float(event["text"].split()[1])
            elif event["event"] == "output" and event["text"].startswith("after") and t0 is not None:
                out["text after"].append((now - t0) * 1000)
                t0 = None
            elif event["event"] == "display" and event.get("path") and t0 is not None:
                assert event["width"] * event["height"] == 1_000_000, event
                out["show -> event"].append((now - t0) * 1000)
                for protocol in PROTOCOLS:
                    start = time.time()
                    if protocol == "halfblock":
                        cols, rows = INLINE_MAX_COLS, fit(event["width"], event["height"])[1] // 2
                    else:
                        cols, rows = graphics.geometry(event["width"], event["height"], INLINE_MAX_COLS,
                                                       INLINE_MAX_ROWS, graphics.DEFAULT_CELL)
                    drawn = inline_rows(project / event["path"], protocol, cols, rows)
                    if protocol == "sixel":  # shown as half blocks at once, sharpened when encoded
                        first = time.time()
                        out.setdefault("shown (sixel)", []).append((now - t0 + first - start) * 1000)
                        assert sixel_rows(project / event["path"], cols, rows, graphics.DEFAULT_CELL)
                    done = time.time()
                    assert drawn.texts and (protocol != "kitty" or drawn.graphics[0] is not None)
                    out[f"rows ({protocol})"].append((done - start) * 1000)
                    out[f"total ({protocol})"].append((now - t0 + done - start) * 1000)
    proc.wait(60)
    if proc.returncode != 0:
        raise RuntimeError(f"devloop run failed: {proc.stderr.read().decode()[-2000:]}")
    return out


def ssh_profile(project: Path, home: Path) -> None:
    state = os.environ.get("DEVLOOP_TEST_SSHD_DIR", "/tmp/devloop-test/sshd")
    subprocess.run(["bash", str(REPO / "tests/infra/sshd-up.sh"), state], check=True, stdout=subprocess.DEVNULL)
    env = dict(line.split("=", 1) for line in (Path(state) / "env").read_text().splitlines() if "=" in line)
    (home / ".ssh").mkdir(parents=True)
    kh = home / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{env['SSHD_PORT']} {env['SSHD_HOST_PUBKEY']}\n")
    os.environ["DEVLOOP_SSH_CONFIG"] = str(home / "no-config")
    os.environ["HOME"] = str(home)
    (project / "profiles").mkdir(exist_ok=True)
    (project / "profiles" / "ssh.yaml").write_text(
        f"kind: ssh\nhost: 127.0.0.1\nport: {env['SSHD_PORT']}\nuser: {env['SSHD_USER']}\n"
        f"identity_file: {env['SSHD_CLIENT_KEY']}\nknown_hosts: {kh}\nworkdir: {home.parent / 'remote'}\n"
        f"python: {sys.executable}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--skip-ssh", action="store_true", help="measure the local profile only")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="devloop-bench-fig-") as tmp:
        project = Path(tmp) / "proj"
        project.mkdir()
        (project / "devloop.toml").write_text('[project]\nname = "bench-figures"\n')
        (project / "nb.py").write_text(notebook(args.runs))
        results["local"] = measure(project, None, args.runs)
        if not args.skip_ssh:
            ssh_profile(project, Path(tmp) / "home")
            results["ssh (loopback)"] = measure(project, "ssh", args.runs)
    print(f"\n1-megapixel figure (1000x1000) from plt.show() to the TUI's log rows, {args.runs} figures (ms)")
    print(f"{'profile':<16}{'step':<18}{'p50':>9}{'p90':>9}{'min':>9}{'max':>9}")
    for name, table in results.items():
        for step, values in table.items():
            print(f"{name:<16}{step:<18}{pct(values, .5):>9.1f}{pct(values, .9):>9.1f}"
                  f"{min(values):>9.1f}{max(values):>9.1f}")
    key = "ssh (loopback)" if "ssh (loopback)" in results else "local"
    for step in ("total (halfblock)", "total (kitty)", "shown (sixel)", "total (sixel)"):
        p50 = pct(results[key][step], .5)
        what = "half blocks, then sharpened" if step == "shown (sixel)" else step.split()[1][1:-1]
        print(f"target: plt.show() -> TUI shows it ({what}) p50 <= 300 ms on {key}: "
              f"{'MET' if p50 <= 300 else 'NOT MET'} ({p50:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
