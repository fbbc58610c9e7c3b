"""Sessions that outlive the front end: attach, reattach, sync and save -> output, on loopback.

1. attach: `devloop watch nb.py -p P --json` started while the profile's session kernel is live
   (the previous watch was SIGKILLed); the clock runs from the process start to the `target`
   event with state "attached" (the cells' kept state is emitted just before it). For SSH and
   local; a cold start (`devloop stop` first, so no session) for comparison: to the kernel's
   `ready` event and to the end of the first pass. Also SSH attach in a 10,000-file project.
2. reattach: with a watch attached over SSH, the sshd per-connection process serving its
   connection is SIGKILLed (as tests/integration/ssh do); the clock runs from the kill to the
   `target` event "ready" whose message says "reattached".
3. `devloop sync -p ssh` after one changed file in a 10,000-file tree while that project's
   session is live (its watch SIGKILLed, so no front end syncs the change first), against
   `rsync -a` over ssh of the same kind of change, in the same run (new connection, and a
   ControlMaster connection kept open: rsync's best case): the cold path. Then the same with a
   watch attached: `devloop sync` hands the work to it over the control socket.
4. save -> first output of the edited cell through `devloop watch --json` (which runs the kernel
   as a session through the relay) on local and SSH, as bench_ssh.py measures it.

When `python3` on the host is a wrapper (a pyenv shim: a bash script on every exec), an
`ssh-direct` profile names the interpreter it runs, and rows for it show what the wrapper costs;
a last table shows the host's own cost per exec channel (the login shell's rc files, the
wrapper), which every devloop exec pays once and rsync once per connection.

Everything runs through the real CLI (this interpreter's console script, bytecode cached in a
folder of the bench). The sshd is tests/infra/sshd-up.sh (or $DEVLOOP_TEST_SSHD_DIR); the real
~/.ssh is not touched (a private HOME). Every session the bench starts is stopped at the end.

    python3 benchmarks/bench_attach.py [--runs 7] [--saves 15] [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NB = "# %% load\nimport random\nX = random.random()\nprint('x', X)\n\n# %% report\nprint('value', {n})\n"


def sshd_env() -> dict[str, str]:
    state = os.environ.get("DEVLOOP_TEST_SSHD_DIR", "/tmp/devloop-test/sshd")
    subprocess.run(["bash", str(REPO / "tests/infra/sshd-up.sh"), state], check=True,
                   stdout=subprocess.DEVNULL)  # idempotent: a running server is reused
    return dict(line.split("=", 1) for line in (Path(state) / "env").read_text().splitlines() if "=" in line)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def devloop_argv() -> list[str]:
    exe = Path(sys.executable).with_name("devloop")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "devloop.cli"]


class Bench:
    def __init__(self, tmp: Path, env: dict[str, str], debounce_ms: int) -> None:
        self.tmp = tmp
        self.sshd = env
        self.home = tmp / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.known_hosts = self.home / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{env['SSHD_PORT']} {env['SSHD_HOST_PUBKEY']}\n")
        self.debounce_ms = debounce_ms
        # the console script as a user runs it, with its bytecode cached (as an installed package
        # has it), not under the source tree; a private HOME: the real ~/.ssh is never read
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.pop("GITHUB_ACTIONS", None)
        self.env.pop("SSH_AUTH_SOCK", None)
        self.env.update(PYTHONPYCACHEPREFIX=str(tmp / "pycache"), HOME=str(self.home),
                        DEVLOOP_SSH_CONFIG=str(self.home / "no-config"))
        self.ssh = ["ssh", "-F", "/dev/null", "-i", env["SSHD_CLIENT_KEY"], "-p", env["SSHD_PORT"],
                    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                    "-o", f"UserKnownHostsFile={self.known_hosts}"]
        self.projects: list[Path] = []
        self.found_python = self.direct_python = ""

    def project(self, name: str) -> Path:
        root = self.tmp / name
        (root / "profiles").mkdir(parents=True)
        (root / "devloop.toml").write_text(f'[project]\nname = "{name}"\n[sync]\ndebounce_ms = {self.debounce_ms}\n')
        e = self.sshd
        (root / "profiles" / "ssh.yaml").write_text(
            f"kind: ssh\nhost: 127.0.0.1\nport: {e['SSHD_PORT']}\nuser: {e['SSHD_USER']}\n"
            f"identity_file: {e['SSHD_CLIENT_KEY']}\nknown_hosts: {self.known_hosts}\n"
            f"workdir: {self.tmp / (name + '-remote')}\n")
        if self.direct_python:
            (root / "profiles" / "ssh-direct.yaml").write_text(
                (root / "profiles" / "ssh.yaml").read_text().replace("-remote\n", "-direct-remote\n")
                + f"python: {self.direct_python}\n")
        (root / "nb.py").write_text(NB.format(n=-1))
        self.projects.append(root)
        return root

    def workdir(self, project: Path, profile: str) -> Path:
        return self.tmp / (project.name + ("-direct" if profile == "ssh-direct" else "") + "-remote")

    def resolve_python(self) -> None:
        """The interpreter `python3` runs on the host: when PATH finds a wrapper there (a pyenv
        shim: a bash script run on every exec), an `ssh-direct` profile names the real one."""
        out = subprocess.run(self.ssh + [f"{self.sshd['SSHD_USER']}@127.0.0.1",
                                         "command -v python3; python3 -c 'import sys; print(sys.executable)'"],
                             capture_output=True, text=True, check=True).stdout.split()
        self.found_python = out[0]
        self.direct_python = out[1] if os.path.realpath(out[0]) != os.path.realpath(out[1]) else ""

    def cli(self, project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*devloop_argv(), *args], cwd=project, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def stop_all(self) -> None:
        for project in self.projects:
            res = self.cli(project, "stop", "--all", timeout=120)
            if res.returncode != 0:
                print(f"  (devloop stop --all in {project.name}: {(res.stdout + res.stderr).strip()[-300:]})",
                      file=sys.stderr)


class Watch:
    """`devloop watch nb.py -p P --json` in a subprocess; events with their arrival time (seconds
    since the process was started)."""

    def __init__(self, bench: Bench, project: Path, profile: str) -> None:
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([*devloop_argv(), "watch", "nb.py", "-p", profile, "--json"],
                                     cwd=project, env=bench.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.buf = b""
        self.seen: list[dict] = []

    def until(self, pred, timeout: float = 60.0) -> tuple[dict, float]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.startswith(b"{"):
                    e = json.loads(line)
                    self.seen.append(e)
                    if pred(e):
                        return e, time.perf_counter()
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError(f"devloop watch did not answer; last events: {self.seen[-5:]}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"devloop watch exited ({self.proc.wait()}): {err}")
            self.buf += chunk

    def since_start(self, pred, timeout: float = 60.0) -> tuple[dict, float]:
        e, t = self.until(pred, timeout)
        return e, t - self.t0

    def kill(self) -> None:
        """SIGKILL: the front end dies, the session goes on."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


def is_attached(e: dict) -> bool:
    return e["event"] == "target" and e["state"] == "attached"


def is_reattached(e: dict) -> bool:
    return e["event"] == "target" and e["state"] == "ready" and "reattached" in e.get("message", "")


def is_run_done(e: dict) -> bool:
    return e["event"] == "run_done"


def start_session(bench: Bench, project: Path, profile: str) -> None:
    """A first watch that runs every cell, then dies (SIGKILL): its session is left live."""
    w = Watch(bench, project, profile)
    w.until(is_run_done, timeout=300)
    w.kill()


def attach_times(bench: Bench, project: Path, profile: str, runs: int) -> tuple[list[float], list[float]]:
    """(start -> attached, start -> first pass done) in seconds, over `runs` watches each SIGKILLed."""
    start_session(bench, project, profile)
    attached, done = [], []
    for _ in range(runs):
        time.sleep(0.3)
        w = Watch(bench, project, profile)
        try:
            _, t = w.since_start(is_attached)
            attached.append(t)
            e, t = w.since_start(is_run_done)
            done.append(t)
            assert e["cells_run"] == 0, f"an attach reran cells: {e}"
        finally:
            w.kill()
    return attached, done


def cold_times(bench: Bench, project: Path, profile: str, runs: int) -> tuple[list[float], list[float]]:
    """(start -> kernel ready, start -> first pass done) with no session live (stopped first)."""
    ready, done = [], []
    for _ in range(runs):
        stopped = bench.cli(project, "stop", "-p", profile)
        assert stopped.returncode in (0, 1), stopped.stderr
        time.sleep(0.3)
        w = Watch(bench, project, profile)
        try:
            _, t = w.since_start(lambda e: e["event"] == "ready")
            ready.append(t)
            e, t = w.since_start(is_run_done)
            done.append(t)
            assert e["cells_run"] == 2, e
            assert not any(is_attached(x) for x in w.seen), "a cold start attached"
        finally:
            w.kill()
    return ready, done


# ------------------------------------------------------------------ drops
def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(") ", 1)[-1].split()[1])


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode(errors="replace")


def sshd_serving(workdir: Path) -> int:
    """The sshd per-connection process above the agent relay (`attach`) running in `workdir`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            argv = _cmdline(pid).split()
            if "attach" not in argv or os.readlink(f"/proc/{pid}/cwd") != str(workdir):
                continue
            parent = _parent(pid)
            while parent > 1 and "sshd" not in _cmdline(parent):
                parent = _parent(parent)
        except (OSError, ValueError, IndexError):
            continue
        if parent > 1:
            found.append(parent)
    if len(set(found)) != 1:
        raise RuntimeError(f"expected one sshd process serving the relay in {workdir}, found {found}")
    return found[0]


def reattach_times(bench: Bench, project: Path, profile: str, runs: int) -> list[float]:
    workdir = bench.workdir(project, profile)
    start_session(bench, project, profile)
    w = Watch(bench, project, profile)
    out = []
    try:
        w.until(is_attached)
        w.until(is_run_done)
        for _ in range(runs):
            time.sleep(0.5)
            sshd = sshd_serving(workdir)
            os.kill(sshd, signal.SIGKILL)
            t0 = time.perf_counter()
            e, t = w.until(lambda e: is_reattached(e) or e["event"] == "error")
            assert is_reattached(e), f"no reattach: {e}"
            out.append(t - t0)
        # the kernel kept its state: the next save reruns the last cell only
        time.sleep(0.3)
        (project / "nb.py").write_text(NB.format(n=4242 + len(profile)))  # differs from what ran
        e, _ = w.until(is_run_done)
        assert e["cells_run"] == 1 and e["ok"], e
    finally:
        w.kill()
    return out


# ------------------------------------------------------------------ save -> output
def save_to_output(bench: Bench, project: Path, profile: str, saves: int) -> list[float]:
    w = Watch(bench, project, profile)
    out = []
    try:
        w.until(is_run_done, timeout=120)
        for i in range(saves):
            time.sleep(0.3)
            t0 = time.perf_counter()
            (project / "nb.py").write_text(NB.format(n=i))
            _, t = w.until(lambda e: e["event"] == "output" and e["text"].startswith(f"value {i}\n"))
            out.append((t - t0) * 1000)
            e, _ = w.until(is_run_done)
            assert e["cells_run"] == 1, e
    finally:
        w.kill()
    return out


# ------------------------------------------------------------------ sync vs rsync
def make_tree(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"pkg{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i % 100:03d}.py").write_text(f"# module {i}\nVALUE = {i}\n" + "x = 1\n" * 20)


def sync_vs_rsync(bench: Bench, project: Path, runs: int) -> dict[str, list[float]]:
    start_session(bench, project, "ssh")  # the session is live, its front end gone
    n = len(list(project.glob("pkg*/mod*.py"))) // 2
    changed = project / f"pkg{n // 100:03d}" / f"mod{n % 100:03d}.py"
    dests = {"rsync -a over ssh (new connection)": (bench.tmp / "rsync-new", bench.ssh),
             "rsync -a over ssh (ControlMaster)": (bench.tmp / "rsync-cm", bench.ssh + [
                 "-o", "ControlMaster=auto", "-o", f"ControlPath={bench.tmp}/cm-%C", "-o", "ControlPersist=120"])}

    def rsync(dest: Path, ssh: list[str]) -> None:
        subprocess.run(["rsync", "-a", "--exclude", ".devloop/", "-e", " ".join(ssh), f"{project}/",
                        f"{bench.sshd['SSHD_USER']}@127.0.0.1:{dest}/"], check=True, capture_output=True)

    for dest, ssh in dests.values():
        rsync(dest, ssh)  # the initial copy
    profiles = {"devloop sync -p ssh (session live; cold path)": "ssh"}
    if bench.direct_python:
        start_session(bench, project, "ssh-direct")
        profiles["devloop sync -p ssh-direct (no python wrapper; cold path)"] = "ssh-direct"
    for profile in profiles.values():
        res = bench.cli(project, "sync", "-p", profile)  # warm: the stat cache and the record
        assert res.returncode == 0, res.stderr
    times: dict[str, list[float]] = {name: [] for name in profiles}
    times.update({name: [] for name in dests})
    for i in range(runs):
        for name in times:
            # the size changes every time: rsync's quick check (size + mtime in seconds) must see it
            changed.write_text(f"# edit {i} {name}\nVALUE = {i}\n" + "#" * (i + 1) + "\n")
            t0 = time.perf_counter()
            if name.startswith("devloop"):
                res = bench.cli(project, "sync", "-p", profiles[name])
                assert res.returncode == 0, res.stderr
            else:
                rsync(*dests[name])
            times[name].append((time.perf_counter() - t0) * 1000)
    subprocess.run(dests["rsync -a over ssh (ControlMaster)"][1] + ["-O", "exit", "127.0.0.1"], capture_output=True)
    remote = bench.workdir(project, "ssh") / changed.relative_to(project)
    assert remote.read_text() != changed.read_text()  # the last change went to rsync's copies only
    live = bench.cli(project, "sessions", "--json")
    assert live.returncode == 0 and '"ssh"' in live.stdout, f"the session is not live: {live.stdout} {live.stderr}"
    # the hand-off: a watch is attached, so `devloop sync` asks it over the control socket (its
    # scanner and receiver are warm). The watch also syncs the save itself once it settles, so
    # the handed-over sync may find nothing left to send: the time is what the user waits for.
    handed = "devloop sync -p ssh (handed to a live watch)"
    times[handed] = []
    w = Watch(bench, project, "ssh")
    try:
        w.until(is_run_done, timeout=300)
        for i in range(runs):
            changed.write_text(f"# edit {i} handed\nVALUE = {i}\n" + "#" * (i + 2) + "\n")
            t0 = time.perf_counter()
            res = bench.cli(project, "sync", "-p", "ssh")
            assert res.returncode == 0 and "running session" in res.stdout, res.stdout + res.stderr
            times[handed].append((time.perf_counter() - t0) * 1000)
    finally:
        w.kill()
    return times


# ------------------------------------------------------------------ the host's cost per exec
def exec_costs(bench: Bench, runs: int) -> dict[str, list[float]]:
    """What every exec channel pays on this host before devloop's code runs (the login shell's
    rc files, a python wrapper), over one kept connection (ControlMaster: no handshake)."""
    cm = bench.ssh + ["-o", "ControlMaster=auto", "-o", f"ControlPath={bench.tmp}/cm-exec-%C",
                      "-o", "ControlPersist=60", f"{bench.sshd['SSHD_USER']}@127.0.0.1"]
    commands = {"exec `true` (the user's shell and its rc files)": "true",
                f"exec `{bench.found_python} -c pass`": f"{bench.found_python} -c pass"}
    if bench.direct_python:
        commands[f"exec `{bench.direct_python} -c pass`"] = f"{bench.direct_python} -c pass"
    subprocess.run(cm + ["true"], check=True, capture_output=True)  # the master connection
    out: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            t0 = time.perf_counter()
            subprocess.run(cm + [command], check=True, capture_output=True)
            out[name].append(time.perf_counter() - t0)
    subprocess.run(cm[:-1] + ["-O", "exit", cm[-1]], capture_output=True)
    return out


# ------------------------------------------------------------------ report
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="attaches, reattaches, cold starts and syncs timed (default 7)")
    ap.add_argument("--saves", type=int, default=15, help="saves timed per profile (default 15)")
    ap.add_argument("--files", type=int, default=10_000, help="files in the sync tree (default 10,000)")
    ap.add_argument("--debounce-ms", type=int, default=50, help="[sync] debounce_ms (default 50, devloop's default)")
    args = ap.parse_args()
    load0 = os.getloadavg()
    t_begin = time.monotonic()
    env = sshd_env()
    rows: list[tuple[str, list[float], str, float | None]] = []  # name, seconds, target, target s
    with tempfile.TemporaryDirectory(prefix="devloop-bench-attach-") as tmp:
        bench = Bench(Path(tmp), env, args.debounce_ms)
        bench.resolve_python()
        try:
            small = bench.project("small")
            big = bench.project("big")
            make_tree(big, args.files)
            bench.cli(small, "--help")  # compile the bytecode once, as an install has it

            for profile in ("ssh", "local"):
                attached, done = attach_times(bench, small, profile, args.runs)
                rows.append((f"{profile}: watch start -> attached (live session)", attached, "<= 1 s", 1.0))
                rows.append((f"{profile}:   ... -> first pass done (0 cells rerun)", done, "", None))
                ready, cold_done = cold_times(bench, small, profile, args.runs)
                rows.append((f"{profile}: cold start (no session) -> kernel ready", ready, "(reference)", None))
                rows.append((f"{profile}:   ... -> first pass done (2 cells)", cold_done, "(reference)", None))
            if bench.direct_python:
                attached, _ = attach_times(bench, small, "ssh-direct", args.runs)
                rows.append(("ssh-direct: watch start -> attached (live session)", attached, "<= 1 s", 1.0))
            print(f"  [{time.monotonic() - t_begin:.0f} s] attach and cold starts done", file=sys.stderr)

            big_attached, _ = attach_times(bench, big, "ssh", max(3, args.runs // 2))
            rows.append((f"ssh: watch start -> attached, {args.files}-file project", big_attached, "<= 1 s", 1.0))

            for profile in ("ssh", "ssh-direct") if bench.direct_python else ("ssh",):
                re = reattach_times(bench, small, profile, args.runs)
                rows.append((f"{profile}: sshd process killed -> reattached", re, "<= 2 s", 2.0))
            print(f"  [{time.monotonic() - t_begin:.0f} s] reattach done", file=sys.stderr)

            sync = sync_vs_rsync(bench, big, args.runs)
            print(f"  [{time.monotonic() - t_begin:.0f} s] sync done", file=sys.stderr)

            lat = {p: save_to_output(bench, small, p, args.saves) for p in ("local", "ssh")}
            costs = exec_costs(bench, args.runs)
        finally:
            bench.stop_all()
    load1 = os.getloadavg()

    print(f"\nSessions on loopback; medians of {args.runs} runs (sync tree {args.files} files, "
          f"debounce {args.debounce_ms} ms); python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load avg {load0[0]:.2f} -> {load1[0]:.2f} (1 min), whole bench {time.monotonic() - t_begin:.0f} s")
    if bench.direct_python:
        print(f"ssh: `python3` on the host is {bench.found_python}, which runs {bench.direct_python}; "
              f"profile ssh-direct sets `python: {bench.direct_python}` (no wrapper per exec)")
    print(f"\n{'measure (seconds)':<56}{'p50':>8}{'p90':>8}{'min':>8}{'max':>8}  target")
    for name, vals, target, limit in rows:
        verdict = "" if limit is None else ("  MET" if statistics.median(vals) <= limit else "  NOT MET")
        print(f"{name:<56}{statistics.median(vals):>8.3f}{pct(vals, .9):>8.3f}{min(vals):>8.3f}{max(vals):>8.3f}"
              f"  {target}{verdict}")

    print(f"\nthe host's own cost per exec channel, over a kept connection (ssh ControlMaster), seconds")
    for name, vals in costs.items():
        print(f"{name:<56}{statistics.median(vals):>8.3f}{pct(vals, .9):>8.3f}{min(vals):>8.3f}{max(vals):>8.3f}")
    print("(an SSH attach opens two execs running python: the target's probe and the relay; "
          "a reattach three: probe, the old connection's processes killed, relay)")

    base_name = "rsync -a over ssh (new connection)"
    base = statistics.median(sync[base_name])
    print(f"\none changed file, {args.files}-file tree, over ssh (ms)")
    print(f"{'method':<56}{'p50':>8}{'p90':>8}{'min':>8}  ratio to {base_name}")
    for name, vals in sync.items():
        print(f"{name:<56}{statistics.median(vals):>8.1f}{pct(vals, .9):>8.1f}{min(vals):>8.1f}  "
              f"{statistics.median(vals) / base:.2f}x")
    dl = statistics.median(sync["devloop sync -p ssh (session live; cold path)"])
    best = min(statistics.median(v) for k, v in sync.items() if k.startswith("rsync"))
    hd = statistics.median(sync["devloop sync -p ssh (handed to a live watch)"])
    print(f"target: `devloop sync` <= 1.0x rsync while a session is live: handed to a live watch "
          f"{hd / base:.2f}x rsync (new connection) {'MET' if hd <= base else 'NOT MET'}, {hd / best:.2f}x rsync's "
          f"best; cold path (session live, no front end) {dl / base:.2f}x")

    print(f"\nsave -> first output of the edited cell, devloop watch --json (session kernel via the relay), "
          f"{args.saves} saves (ms)")
    print(f"{'profile':<12}{'p50':>8}{'p90':>8}{'min':>8}{'max':>8}  target")
    for profile, limit in (("local", 100), ("ssh", 250)):
        v = lat[profile]
        print(f"{profile:<12}{pct(v, .5):>8.1f}{pct(v, .9):>8.1f}{min(v):>8.1f}{max(v):>8.1f}  p50 <= {limit} ms "
              f"{'MET' if pct(v, .5) <= limit else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
