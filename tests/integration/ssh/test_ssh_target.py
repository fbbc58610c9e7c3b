"""SshTarget against a real OpenSSH server on 127.0.0.1: connect through an ~/.ssh/config alias,
spawn processes, the agent kernel, sync through the agent's receiver, kill, doctor checks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from devloop.core.kernel import KernelClient
from devloop.core.sync.manifest import IgnoreRules, Scanner
from devloop.core.sync.plan import plan_sync
from devloop.core.sync.transport import fetch_remote_manifest, sync_via_agent
from devloop.core.targets import create_target
from devloop.core.targets.ssh import SshTarget

pytestmark = pytest.mark.ssh


async def started(project: Path) -> SshTarget:
    from devloop.core.config import load_config

    config = load_config(project)
    profile = config.profile("ssh-test")
    target = create_target(profile, config)
    assert isinstance(target, SshTarget)
    await target.start()
    return target


async def test_start_resolves_alias_finds_python_and_creates_workdir(ssh_project: Path, tmp_path: Path) -> None:
    target = await started(ssh_project)
    try:
        info = target.info
        assert info.kind == "ssh"
        assert info.workdir == str((tmp_path / "remote" / "work").resolve())
        assert (tmp_path / "remote" / "work").is_dir()
        assert info.python.startswith("/")
        assert info.details["host"] == "127.0.0.1"
        assert info.details["key"].endswith("client_ed25519")
        bundle = Path(info.details["bundle"])
        assert bundle.is_file() and bundle.name.startswith("agent-")
        assert await target.alive()
        # idempotent: a second start on a live connection changes nothing
        assert await target.start() is info
    finally:
        await target.stop()
    assert not await target.alive()


async def test_spawn_streams_stdout_keeps_stderr_apart_and_reports_exit_code(ssh_project: Path) -> None:
    target = await started(ssh_project)
    try:
        ch = await target.spawn(
            ["sh", "-c", 'read x; echo "got $x in $(pwd)"; echo "$GREETING"; echo oops >&2; exit 7'],
            env={"GREETING": "hello 'quoted' world"})
        await ch.send(b"ping\n")
        await ch.close_stdin()
        lines = [await ch.readline(), await ch.readline(), await ch.readline()]
        assert lines[0] == f"got ping in {target.info.workdir}\n".encode()
        assert lines[1] == b"hello 'quoted' world\n"
        assert lines[2] == b""
        assert await ch.wait() == 7
        assert "oops" in ch.stderr_tail()
    finally:
        await target.stop()


async def test_kill_stops_the_process_and_its_children(ssh_project: Path, tmp_path: Path) -> None:
    target = await started(ssh_project)
    try:
        ch = await target.spawn(["sh", "-c", "sleep 300 & echo child $!; wait"])
        line = await ch.readline()
        child = int(line.split()[1])
        os.kill(child, 0)  # the remote is this machine: the child runs
        await ch.kill()
        await ch.kill()  # twice is fine
        for _ in range(100):
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            state = Path(f"/proc/{child}/stat").read_text().split()[2] if Path(f"/proc/{child}/stat").exists() else "Z"
            if state == "Z":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the remote child survived kill()")
    finally:
        await target.stop()


async def test_agent_kernel_runs_cells_with_state_over_ssh(ssh_project: Path) -> None:
    target = await started(ssh_project)
    out: list[tuple[str, str]] = []
    try:
        ch = await target.spawn(target.agent_argv("kernel"))
        kernel = KernelClient(ch, on_output=lambda rid, stream, text: out.append((stream, text)))
        ready = await kernel.start()
        assert ready["cwd"] == target.info.workdir
        r1 = await kernel.exec("x = 20\nprint('x is', x)\n", "nb.py", 2)
        r2 = await kernel.exec("print('double', x * 2)\n", "nb.py", 5)
        r3 = await kernel.exec("1/0\n", "nb.py", 8)
        assert r1.ok and r2.ok and not r3.ok
        assert r3.error and r3.error["frames"][-1]["line"] == 8
        text = "".join(t for s, t in out if s == "stdout")
        assert "x is 20" in text and "double 40" in text
        await kernel.shutdown()
    finally:
        await target.stop()


async def test_sync_through_the_agent_receiver_and_remote_manifest(ssh_project: Path, tmp_path: Path) -> None:
    src = ssh_project
    (src / "pkg").mkdir()
    (src / "pkg" / "a.py").write_text("A = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "run.sh", 0o755)
    target = await started(src)
    try:
        scanner = Scanner(src, IgnoreRules.load(src, ()))
        first = scanner.scan()
        plan = plan_sync(None, first)
        stats = await sync_via_agent(target, plan, str(src))
        assert stats.files == len(plan.copies) >= 3
        remote = Path(target.info.workdir)
        assert (remote / "pkg" / "a.py").read_text() == "A = 1\n"
        assert os.stat(remote / "run.sh").st_mode & 0o777 == 0o755
        assert set(await fetch_remote_manifest(target)) == set(first)

        (src / "pkg" / "a.py").write_text("A = 2\n")
        second = scanner.update(["pkg/a.py"])
        plan2 = plan_sync(first, second)
        assert plan2.copies == ("pkg/a.py",)
        stats2 = await sync_via_agent(target, plan2, str(src))
        assert stats2.files == 1
        assert (remote / "pkg" / "a.py").read_text() == "A = 2\n"
    finally:
        await target.stop()


async def test_doctor_checks_report_each_stage(ssh_project: Path, load_profile) -> None:
    profile, config = load_profile(ssh_project)
    target = SshTarget(profile, config)
    try:
        checks = await target.doctor_checks()
    finally:
        await target.stop()
    by_name = {name: (ok, detail) for name, ok, detail in checks}
    assert by_name["reachable"][0] and by_name["authenticated"][0] and by_name["python found"][0]
    assert "Python 3." in by_name["python found"][1]
    ok, detail = by_name["GPUs seen"]
    assert not ok and "no GPU" in detail  # this machine has none: the agent says why
