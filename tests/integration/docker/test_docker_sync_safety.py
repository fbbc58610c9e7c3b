"""Issue 21 items 1, 2, 4 and 8 on the Docker target: sync never writes outside the workdir
through a link the container made, a planted link at devloop's record is not appended through,
a file gone between the scan and the send is not recorded, and a cell's child that ignores
SIGTERM does not outlive `devloop run` (in a kept container, and with the container removed).

The same cases as tests/unit/test_sync_safety.py and tests/integration/test_local_loop.py run on
the local workdir profile; the receiver (devloop.agent.syncrecv) is the same code here, inside
the container, reached through `docker exec`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import devloop

pytestmark = pytest.mark.docker

TEST_IMAGE = "devloop-test:hostpy"
WORKDIR = "/workspace"  # the test image's WORKDIR

# a JSON picture of a folder inside the container (links not followed), for before/after checks
SNAPSHOT = r"""
import json, os, sys
top, out = sys.argv[1], {}
for d, dirs, files in os.walk(top):
    for n in dirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        rel = os.path.relpath(p, top)
        if os.path.islink(p):
            out[rel] = ["link", os.readlink(p)]
        elif os.path.isdir(p):
            out[rel] = ["dir", st.st_mode]
        else:
            out[rel] = ["file", open(p, "rb").read().hex(), st.st_mode, st.st_mtime_ns]
print(json.dumps(out, sort_keys=True))
"""

CHILD_IGNORING_SIGTERM = (
    "# %%\n"
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
    "print('child', child.pid, flush=True)\n"
)


def labelled(client, project_name):
    return client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project_name}"})


@pytest.fixture
def dproject(project: Path, docker_host, docker_client, monkeypatch):
    """A project with a kept docker profile (`kept`) and a plain one (`plain`); DOCKER_HOST set."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    (project / "devloop.toml").write_text(f'[project]\nname = "{project.name}"\n')
    (project / "profiles").mkdir()
    (project / "profiles" / "kept.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\nkeep: true\n")
    (project / "profiles" / "plain.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    yield project
    for c in labelled(docker_client, project.name):
        c.remove(force=True)


def sh(container, script: str) -> str:
    res = container.exec_run(["sh", "-c", script])
    assert res.exit_code == 0, res.output.decode(errors="replace")
    return res.output.decode()


def py(container, code: str, *args: str) -> str:
    """python3 in the container (the test image has no ln, readlink or grep)."""
    res = container.exec_run(["python3", "-c", code, *args])
    assert res.exit_code == 0, res.output.decode(errors="replace")
    return res.output.decode()


def snapshot(container, folder: str) -> dict:
    res = container.exec_run(["python3", "-c", SNAPSHOT, folder])
    assert res.exit_code == 0, res.output.decode(errors="replace")
    return json.loads(res.output)


def sync(proj: Path):
    return devloop("sync", "--profile", "kept", cwd=proj, timeout=120)


# -- 1. a folder the container replaced by a symlink is a leaf -------------------------------------

def test_docker_a_folder_the_target_made_a_symlink_is_never_entered(dproject: Path, docker_client):
    (dproject / "data").mkdir()
    (dproject / "data" / "a.txt").write_text("a")
    (dproject / "data" / "b.txt").write_text("b")
    (dproject / "main.py").write_text("v1")
    first = sync(dproject)
    assert first.returncode == 0, first.stderr
    (c,) = labelled(docker_client, dproject.name)
    py(c, "import os, shutil; shutil.move('/workspace/data', '/elsewhere'); os.symlink('/elsewhere', '/workspace/data')")
    before = snapshot(c, "/elsewhere")
    assert set(before) == {"a.txt", "b.txt"}
    (dproject / "data" / "a.txt").unlink()
    (dproject / "data" / "b.txt").chmod(0o755)
    (dproject / "data" / "c.txt").write_text("c")
    (dproject / "main.py").write_text("v2")
    res = sync(dproject)
    assert res.returncode == 0, res.stderr
    assert snapshot(c, "/elsewhere") == before
    assert py(c, "import os; print(os.readlink('/workspace/data'))").strip() == "/elsewhere"
    assert sh(c, f"cat {WORKDIR}/main.py") == "v2"
    assert "data/ is a symlink on the target" in res.stdout + res.stderr
    again = sync(dproject)
    assert again.returncode == 0, again.stderr
    assert snapshot(c, "/elsewhere") == before


# -- 2. a planted link at devloop's record is not written through ----------------------------------

def test_docker_a_symlinked_manifest_log_is_refused_and_its_target_untouched(dproject: Path, docker_client):
    (dproject / "a.py").write_text("1")
    first = sync(dproject)
    assert first.returncode == 0, first.stderr
    (c,) = labelled(docker_client, dproject.name)
    log = f"{WORKDIR}/.devloop/manifest.log"
    py(c, "import os, sys; open('/victim.txt', 'w').write('precious'); "
          "os.path.lexists(sys.argv[1]) and os.unlink(sys.argv[1]); os.symlink('/victim.txt', sys.argv[1])", log)
    (dproject / "a.py").write_text("2")
    res = sync(dproject)
    said = res.stdout + res.stderr
    assert res.returncode != 0, said
    assert log in said and "symlink" in said
    assert sh(c, "cat /victim.txt") == "precious"


# -- 4. a file gone between the scan and the send is not recorded ----------------------------------

async def test_docker_a_file_deleted_between_scan_and_send_is_not_recorded(make_target, project, docker_client):
    """Through the Syncer (what `devloop sync` and the session drive): the plan names a.py, a.py
    is deleted before the send. It is not sent and not recorded; once restored with the same
    content the next sync sends it (was: an empty file, and "up to date" for ever)."""
    from devloop.core.sync.syncer import Syncer
    from devloop.core.sync.transport import fetch_remote_manifest

    (project / "b.py").write_bytes(b"beta")
    target = make_target()
    await target.start()
    syncer = Syncer(target, project)
    try:
        assert (await syncer.sync_now()).stats.files == 1
        (project / "a.py").write_bytes(b"alpha")
        plan = await syncer.plan()
        assert plan.copies == ("a.py",)
        (project / "a.py").unlink()
        stats = await syncer.send(plan)
        assert stats.files == 0
        (c,) = labelled(docker_client, project.name)
        assert c.exec_run(["test", "-e", f"{WORKDIR}/a.py"]).exit_code != 0
        remote = await fetch_remote_manifest(target)
        assert "a.py" not in remote and "b.py" in remote
        (project / "a.py").write_bytes(b"alpha")
    finally:
        await syncer.close()
    fresh = Syncer(target, project)  # as the next `devloop sync` does: ask the target afresh
    try:
        result = await fresh.sync_now()
        assert result.sent and "a.py" in result.plan.copies
    finally:
        await fresh.close()
    assert c.exec_run(["cat", f"{WORKDIR}/a.py"]).output == b"alpha"


# -- 8. a cell's child that ignores SIGTERM ends with `devloop run` --------------------------------

ALIVE = ("import sys\ntry:\n    state = open('/proc/%s/stat').read().rsplit(') ', 1)[1][0]\n"
         "except FileNotFoundError:\n    state = 'gone'\nprint(state)")
CMDLINES = ("import os\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
            "            print(p, open('/proc/%s/cmdline' % p, 'rb').read().replace(b'\\0', b' ').decode())\n"
            "        except OSError:\n            pass")


def alive_in(container, pid: int) -> bool:
    """True while `pid` runs in the container (not gone, not a zombie)."""
    return py(container, ALIVE % pid).strip() not in ("gone", "Z")


def cmdlines(container) -> str:
    return py(container, CMDLINES)


def _child_pid(stdout: str) -> int:
    found = re.search(r"child (\d+)", stdout)
    assert found, stdout
    return int(found.group(1))


def test_docker_a_child_that_ignores_sigterm_does_not_outlive_run_in_a_kept_container(dproject: Path, docker_client):
    (dproject / "c.py").write_text(CHILD_IGNORING_SIGTERM)
    res = devloop("run", "c.py", "--profile", "kept", cwd=dproject, timeout=120)
    assert res.returncode == 0, res.stderr
    pid = _child_pid(res.stdout)
    (c,) = labelled(docker_client, dproject.name)
    assert c.status == "running"
    deadline = time.monotonic() + 10
    while alive_in(c, pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive_in(c, pid), f"the cell's child {pid} outlived devloop run:\n{cmdlines(c)}"
    assert "time.sleep(300)" not in cmdlines(c)


def test_docker_without_keep_the_container_and_the_child_are_gone_after_run(dproject: Path, docker_client):
    (dproject / "c.py").write_text(CHILD_IGNORING_SIGTERM)
    res = devloop("run", "c.py", "--profile", "plain", cwd=dproject, timeout=120)
    assert res.returncode == 0, res.stderr
    _child_pid(res.stdout)
    assert labelled(docker_client, dproject.name) == []


async def test_docker_kill_after_the_process_exited_ends_what_it_left_in_its_group(make_target, docker_client, project):
    """The channel's kill() (what the kernel's shutdown calls) once the process itself has
    exited: its child that ignores SIGTERM is still in its group, and is ended too."""
    target = make_target(keep=True)
    await target.start()
    channel = await target.spawn(["sh", "-c", "python3 -c 'import signal, time; signal.signal(signal.SIGTERM, "
                                  "signal.SIG_IGN); time.sleep(300)' </dev/null >/dev/null 2>&1 & echo $!"])
    pid = int((await channel.readline()).strip())
    assert await channel.wait() == 0
    (c,) = labelled(docker_client, project.name)
    assert alive_in(c, pid)
    await channel.kill()
    deadline = time.monotonic() + 10
    while alive_in(c, pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive_in(c, pid), f"the exited process's child {pid} outlived kill():\n{cmdlines(c)}"
