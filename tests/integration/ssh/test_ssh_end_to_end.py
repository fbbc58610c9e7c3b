"""End to end over SSH through the real CLI: `devloop run` gives the same events as on `local`,
`devloop watch` reruns the edited cell, and killing the server-side sshd process mid-cell is a
detach: devloop reattaches to the same kernel, and resyncs only the difference (nothing deleted)."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.clitools import RELAYED_CELLS as CELLS
from tests.clitools import Watch, events, observable
from tests.clitools import devloop as _devloop
from tests.clitools import pid_alive as alive

pytestmark = pytest.mark.ssh


def devloop(*args: str, cwd: Path, timeout: float = 120):
    return _devloop(*args, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("source, name, code", [
    (CELLS, "nb.py", 0),
    ("# %%\nx = 1\n# %% boom\ny = 2\nz = y / 0\n# %%\nprint('never')\n", "bad.py", 1),
    ("import sys\nprint('hello from script')\nsys.exit(3)\n", "script.py", 3),
])
def test_run_over_ssh_gives_the_same_events_as_local(ssh_project: Path, source: str, name: str, code: int) -> None:
    (ssh_project / name).write_text(source)
    local = devloop("run", name, "--json", cwd=ssh_project)
    remote = devloop("run", name, "--profile", "ssh-test", "--json", cwd=ssh_project)
    assert local.returncode == code, local.stderr
    assert remote.returncode == code, remote.stderr
    assert observable(events(remote.stdout)) == observable(events(local.stdout))
    ready = [e for e in events(remote.stdout) if e["event"] == "ready"][0]
    assert ready["cwd"] != str(ssh_project)  # it really ran in the synced remote workdir
    assert (Path(ready["cwd"]) / name).read_text() == source


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().split(") ")[-1].split()[1])


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode()


def wait_dead(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_watch_over_ssh_reruns_only_the_edited_cell(ssh_project: Path) -> None:
    (ssh_project / "nb.py").write_text(CELLS)
    w = Watch(ssh_project, "nb.py", "--profile", "ssh-test", timeout=60)
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in first if e["event"] == "cell_start"] == [0, 1, 2]
        time.sleep(0.3)
        (ssh_project / "nb.py").write_text(CELLS.replace('print("total", sum(doubled))', 'print("sum is", sum(doubled))'))
        second = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in second if e["event"] == "cell_start"] == [2]
        assert "".join(e["text"] for e in second if e["event"] == "output") == "sum is 12\n"
        synced = [e for e in second if e["event"] == "sync"]
        assert synced and synced[0]["files"] == 1
    finally:
        assert w.stop() == 0


SLOW = textwrap.dedent("""\
    # %% load
    import helper
    state = helper.VALUE
    print("loaded", state, flush=True)

    # %% wait
    import time
    print("waiting", flush=True)
    time.sleep(600)
    """)


def relay_of(workdir: Path) -> int:
    """The `attach` relay process serving devloop's link to the session kernel in `workdir`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if " attach" in cmdline(int(entry)) and os.readlink(f"/proc/{entry}/cwd") == str(workdir):
                return int(entry)
        except OSError:
            continue
    raise AssertionError(f"no relay process runs in {workdir}")


def sshd_above(pid: int) -> int:
    for _ in range(4):
        pid = parent_of(pid)
        if "sshd" in cmdline(pid):
            return pid
    raise AssertionError("no sshd process above the relay")


def test_killing_the_server_side_process_mid_cell_keeps_the_kernel_and_reattaches(ssh_project: Path) -> None:
    """The kernel lives on the host, not in the connection: a drop mid-cell is a detach; devloop
    reattaches to the same kernel (the cell goes on, state kept) and resends only the difference."""
    (ssh_project / "helper.py").write_text("VALUE = 41\n")
    (ssh_project / "keep_me.txt").write_text("unchanged\n")
    (ssh_project / "nb.py").write_text(SLOW)
    w = Watch(ssh_project, "nb.py", "--profile", "ssh-test", timeout=60)
    try:
        w.until(lambda e: e["event"] == "output" and "waiting" in e["text"])
        ready = [e for e in w.seen if e["event"] == "ready"][0]
        kernel_pid, workdir = ready["pid"], Path(ready["cwd"])
        sshd_session = sshd_above(relay_of(workdir))
        (workdir / "remote_only.txt").write_text("made on the host\n")
        os.kill(sshd_session, signal.SIGKILL)  # the connection dies mid-cell

        back = w.until(lambda e: e["event"] == "target" and e["state"] == "ready" and "reattached" in e["message"])
        assert any(e["event"] == "target" and e["state"] == "reconnecting" for e in back)
        assert not [e for e in back if e["event"] == "error"]
        assert alive(kernel_pid)  # the cell still runs

        time.sleep(0.3)
        (ssh_project / "helper.py").write_text("VALUE = 42\n")
        (ssh_project / "nb.py").write_text(SLOW.replace("time.sleep(600)", "print('done waiting')"))
        evs = w.until(lambda e: e["event"] == "run_done" and e["ok"])
        states = [e for e in evs if e["event"] == "target"]
        assert not any("state was lost" in s["message"] for s in states)
        syncs = [e for e in evs if e["event"] == "sync"]
        assert syncs and sum(s["files"] for s in syncs) == 2 and all(s["deleted"] == 0 for s in syncs)
        assert [e["cell"] for e in evs if e["event"] == "cell_start"][-2:] == [0, 1]  # helper changed: 0 reruns
        text = "".join(e["text"] for e in evs if e["event"] == "output")
        assert "loaded 42" in text and "done waiting" in text
        assert all(e["pid"] == kernel_pid for e in w.seen if e["event"] == "ready")  # the same kernel
        assert (workdir / "helper.py").read_text() == "VALUE = 42\n"
        assert (workdir / "keep_me.txt").read_text() == "unchanged\n"
        assert (workdir / "remote_only.txt").read_text() == "made on the host\n"
        assert (ssh_project / "keep_me.txt").exists()
    finally:
        assert w.stop() == 0
