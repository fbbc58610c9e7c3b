"""Sync speed against rsync, side by side, on a generated tree synced into a local workdir.

    python3 benchmarks/bench_sync.py                       # 10,000 files / ~200 MB
    python3 benchmarks/bench_sync.py --files 2000 --mb 40  # a quick variant
    python3 benchmarks/bench_sync.py --big                 # also 100,000 files: time + peak memory

Prints a table of medians. Targets (issue 3): initial sync <= rsync -a; one changed file in the
watch loop (the watcher names the path: no full rescan) p50 <= 50 ms and <= 0.2x rsync for the
same change; `devloop sync` after one change <= rsync; rescan with no change <= 100 ms; idle
watcher CPU <= 1% of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devloop.core.config import load_config
from devloop.core.sync.manifest import IgnoreRules, Scanner
from devloop.core.sync.plan import plan_sync
from devloop.core.sync.transport import close_receiver, fetch_remote_manifest, sync_via_agent
from devloop.core.targets.local import LocalTarget
from devloop.core.watch import watch_changes


def make_tree(root: Path, files: int, total_mb: float, seed: int = 1) -> None:
    rng = random.Random(seed)
    blob = os.urandom(8 << 20)
    avg = total_mb * 1e6 / files
    for i in range(files):
        d = root / f"pkg{i % 50:02d}" / f"sub{(i // 50) % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = min(int(rng.expovariate(1 / avg)), len(blob) - 1)
        off = rng.randrange(0, len(blob) - size)
        (d / f"mod{i}.py").write_bytes(blob[off:off + size])


def make_project(base: Path, files: int, mb: float) -> tuple[Path, Path]:
    proj = base / "proj"
    (proj / "profiles").mkdir(parents=True)
    wd = base / "wd"
    (proj / "devloop.toml").write_text('[project]\nname = "bench"\n[sync]\nexclude = ["checkpoints/"]\n')
    (proj / "profiles" / "wd.yaml").write_text(f"kind: local\nworkdir: {wd}\n")
    make_tree(proj / "src", files, mb)
    return proj, wd


def rsync(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["rsync", "-a", "--exclude", ".devloop/", "--exclude", "checkpoints/", f"{src}/", f"{dst}/"],
                   check=True)
    return time.perf_counter() - t


def drop_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def touch_one(proj: Path, i: int) -> str:
    rel = f"src/pkg{i % 50:02d}/sub00/mod{i % 50}.py"
    with open(proj / rel, "ab") as f:
        f.write(b"# edit %d\n" % i)
    return rel


async def devloop_initial(proj: Path, wd: Path) -> float:
    drop_tree(wd)
    drop_tree(proj / ".devloop")
    config = load_config(proj)
    target = LocalTarget(config.profile("wd"), config)
    t = time.perf_counter()
    await target.start()
    # as the session does it: the walk overlaps the remote's answer, new files are hashed
    # while they are sent
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    walking = asyncio.ensure_future(asyncio.to_thread(scanner.scan, False))
    remote = await fetch_remote_manifest(target)
    manifest = await walking
    scanner.hash_needed(remote)
    plan = plan_sync(remote, manifest)
    await sync_via_agent(target, plan, str(proj))
    scanner.adopt_hashes(plan.new_manifest)
    assert all(e.sha256 for e in plan.new_manifest.values() if e.link is None)
    return time.perf_counter() - t


def walk_floor(root: Path) -> float:
    """os.scandir + lstat of every file, no other work: the floor under any rescan here."""
    t = time.perf_counter()
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for de in it:
                if de.is_dir(follow_symlinks=False):
                    if de.name != ".devloop":
                        stack.append(de.path)
                else:
                    de.stat(follow_symlinks=False)
    return time.perf_counter() - t


async def watch_loop_changes(proj: Path, n: int, keep_open: bool) -> tuple[list[float], float]:
    """(per-change seconds: update + plan + sync, the no-change rescan median)."""
    config = load_config(proj)
    target = LocalTarget(config.profile("wd"), config)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    manifest = scanner.scan()
    plan = plan_sync(await fetch_remote_manifest(target), manifest)
    await sync_via_agent(target, plan, str(proj), keep_open=keep_open)
    old = plan.new_manifest
    rescans = []
    for _ in range(9):
        t = time.perf_counter()
        scanner.scan()
        rescans.append(time.perf_counter() - t)
    times = []
    try:
        for i in range(n + 1):
            rel = touch_one(proj, i)
            t = time.perf_counter()
            new = scanner.update([rel])
            p = plan_sync(old, new)
            await sync_via_agent(target, p, str(proj), keep_open=keep_open)
            dt = time.perf_counter() - t
            assert len(p.copies) == 1, p.copies
            old = new
            if i:  # the first one warms the receiver
                times.append(dt)
    finally:
        await close_receiver(target)
    return times, med(rescans)


def devloop_command(proj: Path) -> float:
    """`devloop sync` as a user runs it: the console script of this interpreter (not whatever
    `devloop` PATH finds first, e.g. a pyenv shim: +50-100 ms of bash), with bytecode caching on
    (an installed package has its .pyc files; PYTHONDONTWRITEBYTECODE=1 would recompile every
    module on every run). The .pyc files go to a folder of the bench, not into the source tree."""
    exe = Path(sys.executable).with_name("devloop")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "devloop.cli"]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(proj.parent / "pycache")
    t = time.perf_counter()
    subprocess.run([*argv, "sync", "-p", "wd"], cwd=proj, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


async def idle_cpu(proj: Path, seconds: float) -> float:
    config = load_config(proj)
    rules = IgnoreRules.load(proj, config.sync.exclude)
    stop = asyncio.Event()

    async def run() -> None:
        async for _ in watch_changes(proj, rules, config.sync.debounce_ms, stop):
            pass

    task = asyncio.create_task(run())
    await asyncio.sleep(2)  # watches set up
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
    stop.set()
    await task
    return cpu


def row(name: str, ours: float, theirs: float | None, target: str) -> None:
    ratio = f"{ours / theirs:5.2f}x" if theirs else "   - "
    theirs_s = f"{theirs * 1000:9.1f}" if theirs is not None else "        -"
    print(f"{name:<44} {ours * 1000:9.1f} {theirs_s}  {ratio}  {target}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--runs", type=int, default=3, help="runs per whole-tree measurement (median)")
    ap.add_argument("--changes", type=int, default=21, help="single-file changes measured")
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--big", action="store_true", help="also sync 100,000 files (time, peak memory)")
    ap.add_argument("--dir", default=None,
                    help="folder to build the trees in (default: the system temp folder); e.g. "
                         "/dev/shm to compare the tools' own cost without the disk's noise")
    args = ap.parse_args()
    if not shutil.which("rsync"):
        print("rsync not found: apt-get install -y rsync", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="devloop-bench-", dir=args.dir))
    try:
        proj, wd = make_project(base, args.files, args.mb)
        rs_dst = base / "rsync-dst"
        print(f"tree: {args.files} files, {args.mb:.0f} MB in {base.parent}   (ms, medians; python {sys.version.split()[0]})")
        print(f"{'measure':<44} {'devloop':>9} {'rsync':>9}  ratio  target")
        init_d, init_r = [], []
        for _ in range(args.runs):
            init_d.append(asyncio.run(devloop_initial(proj, wd)))
            drop_tree(rs_dst)
            init_r.append(rsync(proj, rs_dst))
        row("initial sync", med(init_d), med(init_r), "<= 1x rsync")

        kept, rescan = asyncio.run(watch_loop_changes(proj, args.changes, keep_open=True))
        spawned, _ = asyncio.run(watch_loop_changes(proj, max(5, args.changes // 3), keep_open=False))
        one_r = []
        for i in range(max(5, args.runs)):
            rsync(proj, rs_dst)
            touch_one(proj, 1000 + i)
            one_r.append(rsync(proj, rs_dst))
        row("one change, watch loop (kept receiver) p50", med(kept), med(one_r), "<= 50 ms, <= 0.2x")
        row("one change, watch loop, p90", sorted(kept)[int(len(kept) * 0.9) - 1], med(one_r), "")
        row("one change, receiver started per sync p50", med(spawned), med(one_r), "(reference)")

        devloop_command(proj)  # warm the stat cache and the record
        cmd_d, cmd_r = [], []
        for i in range(max(3, args.runs)):
            touch_one(proj, 2000 + i)
            cmd_d.append(devloop_command(proj))
            rsync(proj, rs_dst)
            touch_one(proj, 3000 + i)
            cmd_r.append(rsync(proj, rs_dst))
        row("`devloop sync` command after one change", med(cmd_d), med(cmd_r), "<= 1x rsync")
        noop_r = [rsync(proj, rs_dst) for _ in range(3)]
        row("rescan, no change (scanner, warm)", rescan, med(noop_r), "<= 100 ms")
        floor = med([walk_floor(proj) for _ in range(9)])
        row("  floor: scandir + lstat only, same tree", floor, None, "(reference)")
        if args.idle_s > 0:
            cpu = asyncio.run(idle_cpu(proj, args.idle_s))
            print(f"{'idle watcher CPU over %.0f s' % args.idle_s:<44} {cpu * 100:8.2f}%  (target <= 1% of a core)")

        if args.big:
            drop_tree(base)
            base.mkdir()
            proj, wd = make_project(base, 100_000, 200)
            t = asyncio.run(devloop_initial(proj, wd))
            drop_tree(rs_dst)
            tr = rsync(proj, rs_dst)
            row("100,000 files: initial sync", t, tr, "works")
            t = devloop_command(proj)
            row("100,000 files: `devloop sync`, no change", t, rsync(proj, rs_dst), "works")
            me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"peak memory: devloop {me:.0f} MB, largest child (receiver/rsync/command) {kids:.0f} MB")
    finally:
        drop_tree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
