"""Forwarded-port speed on loopback, per target, beside `ssh -L` on the same sshd.

    python3 benchmarks/bench_ports.py [--mb 200] [--runs 3] [--ttfb 10] [--targets ssh,docker,kube]

For each target a threaded HTTP server runs inside the target (started with `Target.spawn`, like
a cell would) and serves a file of --mb MB; devloop's Forwarder (devloop/core/ports/) forwards
a local port to it. Measured through the local port:
1. throughput of one download of the whole file (MB/s; median of --runs);
2. time to first byte of a new connection (connect, GET of a small file, first byte back):
   the first connection after the forward started, and the median of --ttfb after it.

SSH runs three ways: devloop's native path (paramiko direct-tcpip, what the SSH target uses),
devloop's agent relay on the same host (the `connect` mode over an exec channel, what the other
targets use; to compare the two), and `ssh -L` (OpenSSH) on the same sshd and server. Docker runs
in a container with `network: none`, Kubernetes in a pod of the test cluster (tests/infra/*-up.sh;
DEVLOOP_TEST_DOCKER_HOST, DEVLOOP_TEST_KUBECONFIG as the tests use them). The real ~/.ssh is not
touched. The targets: ssh >= 0.5x `ssh -L` throughput; a new connection's first byte <= 50 ms on
SSH and Docker after the first.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devloop.core.config import load_config  # noqa: E402
from devloop.core.ports.forwarder import Forwarder  # noqa: E402
from devloop.core.ports.spec import ForwardSpec  # noqa: E402
from devloop.core.targets import create_target  # noqa: E402

SERVER = textwrap.dedent("""\
    import http.server, os, sys
    port, mb, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.makedirs(root, exist_ok=True)
    os.chdir(root)
    with open("big.bin", "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(mb):
            fh.write(block)
    with open("small.txt", "w") as fh:
        fh.write("x" * 100)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    srv.daemon_threads = True
    print("ready", flush=True)
    srv.serve_forever()
    """)

CLIENTS = concurrent.futures.ThreadPoolExecutor(4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def download(port: int, path: str = "/big.bin") -> tuple[float, float, int]:
    """(seconds to the first byte, seconds in all, bytes) of GET path through 127.0.0.1:port."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        first = None
        n = 0
        buf = bytearray(1 << 20)
        while True:
            got = s.recv_into(buf)
            if first is None:
                first = time.perf_counter() - t0
            if not got:
                break
            n += got
    return first or 0.0, time.perf_counter() - t0, n


def measure(port: int, mb: int, runs: int, ttfb: int) -> dict[str, float]:
    first = download(port, "/small.txt")[0] * 1000
    later = [download(port, "/small.txt")[0] * 1000 for _ in range(ttfb)]
    rates = []
    for _ in range(runs):
        _, total, n = download(port)
        assert n >= mb * (1 << 20), f"short download: {n} bytes"
        rates.append(n / total / 1e6)
    return {"MB/s": statistics.median(rates), "first ms": first, "ttfb ms": statistics.median(later)}


async def forwarded(target, remote: int, args, *, relay: bool = False) -> dict[str, float]:
    if relay:
        target.native_ports = False  # the agent relay on a target that has a native path (to compare)
    local = free_port()
    fwd = Forwarder((ForwardSpec(local, remote),))
    await fwd.bind()
    fwd.start(target)
    await asyncio.sleep(0.5)  # the relay started ahead is in place, as in a session
    try:
        return await asyncio.get_running_loop().run_in_executor(
            CLIENTS, measure, local, args.mb, args.runs, args.ttfb)
    finally:
        await fwd.close()
        if relay:
            del target.native_ports


async def start_server(target, port: int, mb: int, root: str):
    channel = await target.spawn([target.info.python, "-c", SERVER, str(port), str(mb), root])
    line = await asyncio.wait_for(channel.readline(), 300)
    assert line.strip() == b"ready", (line, channel.stderr_tail())
    return channel


def ssh_project(tmp: Path) -> tuple[Path, dict[str, str]]:
    state = os.environ.get("DEVLOOP_TEST_SSHD_DIR", "/tmp/devloop-test/sshd")
    env = dict(line.split("=", 1) for line in (Path(state) / "env").read_text().splitlines() if "=" in line)
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{env['SSHD_PORT']} {env['SSHD_HOST_PUBKEY']}\n")
    root = tmp / "ssh"
    (root / "profiles").mkdir(parents=True)
    (root / "devloop.toml").write_text('[project]\nname = "bench-ports"\n')
    (root / "profiles" / "t.yaml").write_text(
        f"kind: ssh\nhost: 127.0.0.1\nport: {env['SSHD_PORT']}\nuser: {env['SSHD_USER']}\n"
        f"identity_file: {env['SSHD_CLIENT_KEY']}\nknown_hosts: {known}\nworkdir: {tmp / 'ssh-work'}\n")
    return root, env


def ssh_l(env: dict[str, str], tmp: Path, remote: int, args) -> dict[str, float]:
    local = free_port()
    proc = subprocess.Popen(
        ["ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", f"UserKnownHostsFile={tmp / 'known_hosts'}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
         "-i", env["SSHD_CLIENT_KEY"], "-p", env["SSHD_PORT"], "-L", f"{local}:localhost:{remote}",
         f"{env['SSHD_USER']}@127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", local)) == 0:
                    break
            time.sleep(0.05)
        return measure(local, args.mb, args.runs, args.ttfb)
    finally:
        proc.terminate()
        proc.wait()


async def on_target(root: Path, profile: str, remote: int, args, tmp: Path, *, ways=("native",)) -> dict:
    config = load_config(root)
    target = create_target(config.profile(profile), config)
    await target.start()
    server = None
    try:
        server = await start_server(target, remote, args.mb, f"{target.info.workdir}/bench-ports")
        out = {}
        for way in ways:
            out[way] = await forwarded(target, remote, args, relay=way == "relay")
        return out
    finally:
        if server is not None:
            await server.kill()
        await target.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="size of the download in MB")
    parser.add_argument("--runs", type=int, default=3, help="downloads per way (the median is shown)")
    parser.add_argument("--ttfb", type=int, default=10, help="new connections after the first (median)")
    parser.add_argument("--targets", default="ssh,docker,kube", help="comma-separated: ssh, docker, kube")
    args = parser.parse_args()
    wanted = set(args.targets.split(","))
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if "ssh" in wanted:
            root, env = ssh_project(tmp)
            remote = free_port()
            result = asyncio.run(on_target(root, "t", remote, args, tmp, ways=("native", "relay")))
            rows.append(("ssh: devloop direct-tcpip (used)", result["native"]))
            rows.append(("ssh: devloop agent relay", result["relay"]))
            # ssh -L against a server of its own (the target's was stopped with it)
            proc = subprocess.Popen([sys.executable, "-c", SERVER, str(remote), str(args.mb), str(tmp / "srv")],
                                    stdout=subprocess.PIPE)
            assert proc.stdout.readline().strip() == b"ready"
            try:
                rows.append(("ssh: OpenSSH ssh -L", ssh_l(env, tmp, remote, args)))
            finally:
                proc.kill()
                proc.wait()
        if "docker" in wanted:
            host = os.environ.get("DEVLOOP_TEST_DOCKER_HOST", "unix:///tmp/devloop-test/docker/docker.sock")
            root = tmp / "docker"
            (root / "profiles").mkdir(parents=True)
            (root / "devloop.toml").write_text('[project]\nname = "bench-ports-d"\n')
            (root / "profiles" / "d.yaml").write_text(
                f"kind: docker\nimage: devloop-test:hostpy\nnetwork: none\ndocker_host: {host}\n")
            result = asyncio.run(on_target(root, "d", 8765, args, tmp))
            rows.append(("docker (network none): agent relay", result["native"]))
        if "kube" in wanted:
            kubeconfig = os.environ.get("DEVLOOP_TEST_KUBECONFIG") or os.environ.get("KUBECONFIG")
            if kubeconfig:
                os.environ["KUBECONFIG"] = kubeconfig
                root = tmp / "kube"
                (root / "profiles").mkdir(parents=True)
                (root / "devloop.toml").write_text('[project]\nname = "bench-ports-k"\n')
                (root / "profiles" / "k.yaml").write_text(
                    "kind: kubernetes\nimage: devloop-test:hostpy\nnamespace: default\nnetwork: host\n")
                result = asyncio.run(on_target(root, "k", free_port(), args, tmp))
                rows.append(("kubernetes: agent relay", result["native"]))
    print(f"\nForwarded port on loopback: {args.mb} MB download (median of {args.runs}), time to first "
          f"byte of a new connection (first; median of {args.ttfb} after it)")
    print(f"{'way':<40}{'MB/s':>9}{'first ms':>10}{'ttfb ms':>10}")
    for name, r in rows:
        print(f"{name:<40}{r['MB/s']:>9.1f}{r['first ms']:>10.1f}{r['ttfb ms']:>10.1f}")
    ref = dict(rows).get("ssh: OpenSSH ssh -L")
    ours = dict(rows).get("ssh: devloop direct-tcpip (used)")
    if ref and ours:
        print(f"\nssh throughput: devloop / ssh -L = {ours['MB/s'] / ref['MB/s']:.2f}x (target >= 0.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
