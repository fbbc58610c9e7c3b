"""Issue 21 items 1, 2, 4 and 8 on the SSH target: sync never writes outside the workdir
through a link the host made, a planted link at devloop's record is not appended through, a
file gone between the scan and the send is not recorded, and a cell's child that ignores
SIGTERM does not outlive `devloop run`.

The test sshd runs as this user on this machine, so the remote workdir (the profile's
`workdir:`, tmp_path/remote/work) and the remote processes are local paths and pids here. The
receiver (devloop.agent.syncrecv) is the same code as on the local workdir profile
(tests/unit/test_sync_safety.py), reached over an exec channel."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.clitools import devloop as _devloop
from tests.clitools import pid_alive
from tests.unit.test_sync_safety import snapshot  # the same tree snapshot as the local tests

pytestmark = pytest.mark.ssh

CHILD_IGNORING_SIGTERM = (
    "# %%\n"
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
    "print('child', child.pid, flush=True)\n"
)


def devloop(*args: str, cwd: Path):
    return _devloop(*args, cwd=cwd, timeout=120)


def sync(proj: Path):
    return devloop("sync", "--profile", "ssh-test", cwd=proj)


@pytest.fixture
def remote(ssh_project: Path) -> Path:
    """The remote workdir: the profile's `workdir:` (see conftest.ssh_project)."""
    return ssh_project.parent / "remote" / "work"


# -- 1. a folder the host replaced by a symlink is a leaf ------------------------------------------

def test_ssh_a_folder_the_target_made_a_symlink_is_never_entered(ssh_project: Path, remote: Path) -> None:
    (ssh_project / "data").mkdir()
    (ssh_project / "data" / "a.txt").write_text("a")
    (ssh_project / "data" / "b.txt").write_text("b")
    (ssh_project / "main.py").write_text("v1")
    first = sync(ssh_project)
    assert first.returncode == 0, first.stderr
    assert (remote / "data" / "a.txt").read_text() == "a"
    elsewhere = remote.parent / "elsewhere"  # a sibling of the workdir
    shutil.move(str(remote / "data"), str(elsewhere))
    os.symlink(elsewhere, remote / "data")
    before = snapshot(elsewhere)
    assert set(before) == {"a.txt", "b.txt"}
    (ssh_project / "data" / "a.txt").unlink()
    os.chmod(ssh_project / "data" / "b.txt", 0o755)
    (ssh_project / "data" / "c.txt").write_text("c")
    (ssh_project / "main.py").write_text("v2")
    res = sync(ssh_project)
    assert res.returncode == 0, res.stderr
    assert snapshot(elsewhere) == before
    assert os.readlink(remote / "data") == str(elsewhere)
    assert (remote / "main.py").read_text() == "v2"
    assert "data/ is a symlink on the target" in res.stdout + res.stderr
    again = sync(ssh_project)
    assert again.returncode == 0, again.stderr
    assert snapshot(elsewhere) == before


# -- 2. a planted link at devloop's record is not written through ----------------------------------

def test_ssh_a_symlinked_manifest_log_is_refused_and_its_target_untouched(ssh_project: Path, remote: Path) -> None:
    (ssh_project / "a.py").write_text("1")
    first = sync(ssh_project)
    assert first.returncode == 0, first.stderr
    victim = remote.parent / "victim.txt"
    victim.write_text("precious")
    log = remote / ".devloop" / "manifest.log"
    if os.path.lexists(log):
        log.unlink()
    os.symlink(victim, log)
    (ssh_project / "a.py").write_text("2")
    res = sync(ssh_project)
    said = res.stdout + res.stderr
    assert res.returncode != 0, said
    assert str(log) in said and "symlink" in said
    assert victim.read_text() == "precious"


# -- 4. a file gone between the scan and the send is not recorded ----------------------------------

async def test_ssh_a_file_deleted_between_scan_and_send_is_not_recorded(ssh_project: Path, remote: Path) -> None:
    """Through the Syncer (what `devloop sync` and the session drive): the plan names a.py, a.py
    is deleted before the send. It is not sent and not recorded; once restored with the same
    content the next sync sends it (was: an empty file, and "up to date" for ever)."""
    from devloop.core.config import load_config
    from devloop.core.sync.syncer import Syncer
    from devloop.core.sync.transport import fetch_remote_manifest
    from devloop.core.targets import create_target

    config = load_config(ssh_project)
    target = create_target(config.profile("ssh-test"), config)
    (ssh_project / "b.py").write_bytes(b"beta")
    await target.start()
    try:
        syncer = Syncer(target, ssh_project)
        try:
            assert (await syncer.sync_now()).sent
            (ssh_project / "a.py").write_bytes(b"alpha")
            plan = await syncer.plan()
            assert plan.copies == ("a.py",)
            (ssh_project / "a.py").unlink()
            stats = await syncer.send(plan)
            assert stats.files == 0
            assert not os.path.lexists(remote / "a.py")
            held = await fetch_remote_manifest(target)
            assert "a.py" not in held and "b.py" in held
            (ssh_project / "a.py").write_bytes(b"alpha")
        finally:
            await syncer.close()
        fresh = Syncer(target, ssh_project)  # as the next `devloop sync` does: ask the target afresh
        try:
            result = await fresh.sync_now()
            assert result.sent and "a.py" in result.plan.copies
        finally:
            await fresh.close()
        assert (remote / "a.py").read_bytes() == b"alpha"
    finally:
        await target.stop()


# -- 8. a cell's child that ignores SIGTERM ends with `devloop run` --------------------------------

def test_ssh_a_child_that_ignores_sigterm_does_not_outlive_run(ssh_project: Path) -> None:
    (ssh_project / "c.py").write_text(CHILD_IGNORING_SIGTERM)
    res = devloop("run", "c.py", "--profile", "ssh-test", cwd=ssh_project)
    assert res.returncode == 0, res.stderr
    found = re.search(r"child (\d+)", res.stdout)
    assert found, res.stdout
    pid = int(found.group(1))
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, 9)  # leave nothing behind, then fail
        pytest.fail(f"the cell's child {pid} outlived devloop run on the ssh host")


async def test_ssh_kill_after_the_process_exited_ends_what_it_left_in_its_session(ssh_project: Path) -> None:
    """The channel's kill() (what the kernel's shutdown calls) once the process itself has
    exited: its child that ignores SIGTERM is still in its session, and is ended too."""
    from devloop.core.config import load_config
    from devloop.core.targets import create_target

    config = load_config(ssh_project)
    target = create_target(config.profile("ssh-test"), config)
    await target.start()
    try:
        channel = await target.spawn(["sh", "-c", "python3 -c 'import signal, time; signal.signal(signal.SIGTERM, "
                                      "signal.SIG_IGN); time.sleep(300)' </dev/null >/dev/null 2>&1 & echo $!"])
        pid = int((await channel.readline()).strip())
        assert await channel.wait() == 0
        assert pid_alive(pid)
        await channel.kill()
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, 9)
            pytest.fail(f"the exited process's child {pid} outlived kill()")
    finally:
        await target.stop()
