"""Sessions on the local target (issue 14), through the real CLI: the kernel outlives a killed
`devloop watch`; the next front end attaches, reruns only what changed and keeps the variables;
`devloop sync` / `run` hand their work to a live watch; `devloop stop` leaves nothing running.
The local `workdir:` profile syncs exactly as a remote target does."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.clitools import Watch, devloop, pid_alive

NB = textwrap.dedent("""\
    # %% load
    import random, time
    X = random.random()
    time.sleep(0.5)
    print("loaded", X)
    # %% show
    print("X is", X)
    """)


@pytest.fixture
def proj(tmp_path: Path):
    root = tmp_path / "proj"
    (root / "profiles").mkdir(parents=True)
    (root / "devloop.toml").write_text('[project]\nname = "sess"\n')
    (root / "profiles" / "mirror.yaml").write_text(f"kind: local\nworkdir: {tmp_path / 'wd'}\n")
    (root / "nb.py").write_text(NB)
    yield root
    devloop("stop", "--all", cwd=root, timeout=60)


def _x(text: str) -> str:
    return re.search(r"X is ([0-9.]+)", text).group(1)


def _session_pid(proj: Path) -> int:
    wd = json.loads((proj / ".devloop" / "sessions" / "mirror.json").read_text())["workdir"]
    return json.loads((Path(wd) / ".devloop" / "session" / "session.json").read_text())["pid"]


def test_a_killed_watch_leaves_the_session_and_the_next_front_end_reruns_only_the_edit(proj: Path) -> None:
    w = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
    first = w.until(lambda e: e["event"] == "run_done")
    x = _x("".join(e["text"] for e in first if e["event"] == "output"))
    w.proc.send_signal(signal.SIGKILL)  # the front end dies; the session must not
    w.proc.wait(10)
    kernel = _session_pid(proj)
    assert pid_alive(kernel)
    (proj / "nb.py").write_text(NB.replace('print("X is", X)', 'print("X is", X, "again")'))
    res = devloop("run", "nb.py", "-p", "mirror", "--json", cwd=proj, timeout=60)
    assert res.returncode == 0, res.stderr
    evs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [e["cell"] for e in evs if e["event"] == "cell_start"] == [1]
    assert _x("".join(e["text"] for e in evs if e["event"] == "output")) == x
    assert any(e["event"] == "target" and e["state"] == "attached" for e in evs)
    assert pid_alive(kernel)  # run attached, so it left the session running

    w2 = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
    try:
        again = w2.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in again if e["event"] == "cell_start"] == []  # all up to date
    finally:
        assert w2.stop() == 0  # Ctrl-C without --detach ends the session
    deadline = time.monotonic() + 10
    while pid_alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(kernel)
    assert not (proj / ".devloop" / "sessions" / "mirror.json").exists()


def test_a_cell_running_when_the_front_end_dies_finishes_and_its_output_is_shown_once(proj: Path) -> None:
    (proj / "nb.py").write_text(NB.replace(
        "time.sleep(0.5)", "print('start', flush=True)\ntime.sleep(1)\nprint('mid', flush=True)\ntime.sleep(2)"))
    w = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
    w.until(lambda e: e["event"] == "output" and "start" in e["text"])
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(10)
    time.sleep(1.5)  # 'mid' is printed while nobody is attached
    w2 = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
    try:
        evs = w2.until(lambda e: e["event"] == "run_done")
        outs = [e for e in evs if e["event"] == "output"]
        text = "".join(e["text"] for e in outs)
        # what the dead front end had not acknowledged comes again, once, marked as replayed
        assert text.count("start") <= 1 and all(e["replayed"] for e in outs if "start" in e["text"])
        assert text.count("mid") == 1 and text.count("loaded") == 1 and text.count("X is") == 1
        assert all(e["replayed"] for e in outs if "mid" in e["text"])
        assert not any(e["replayed"] for e in outs if "X is" in e["text"])
        assert [e["cell"] for e in evs if e["event"] == "cell_start"] == [1]  # cell 0 was not rerun
    finally:
        w2.stop()


def test_watch_detach_leaves_the_session_and_stop_ends_it_and_its_children(proj: Path) -> None:
    (proj / "nb.py").write_text(NB + textwrap.dedent("""\
        # %% child
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
        print("child", child.pid)
        """))
    w = Watch(proj, "nb.py", "-p", "mirror", "--detach", timeout=60)
    evs = w.until(lambda e: e["event"] == "run_done")
    child = int(re.search(r"child (\d+)", "".join(e["text"] for e in evs if e["event"] == "output")).group(1))
    assert w.stop() == 0
    kernel = _session_pid(proj)
    assert pid_alive(kernel) and pid_alive(child)
    listed = devloop("sessions", "--json", cwd=proj, timeout=60)
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["profile"] == "mirror" and row["live"] and row["cells"] == {"0": "ok", "1": "ok", "2": "ok"}
    assert devloop("stop", "-p", "mirror", cwd=proj, timeout=60).returncode == 0
    deadline = time.monotonic() + 10
    while (pid_alive(kernel) or pid_alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(kernel) and not pid_alive(child)
    assert devloop("sessions", cwd=proj, timeout=60).stdout.startswith("no sessions")


def test_sync_and_run_hand_their_work_to_a_live_watch(proj: Path) -> None:
    w = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        x = _x("".join(e["text"] for e in first if e["event"] == "output"))
        w.watching = False
        synced = devloop("sync", "-p", "mirror", cwd=proj, timeout=60)
        assert synced.returncode == 0 and "running session" in synced.stdout, synced.stdout + synced.stderr
        ran = devloop("run", "nb.py", "-p", "mirror", cwd=proj, timeout=60)
        assert ran.returncode == 0 and "run ok: nothing reran" in ran.stdout, ran.stdout + ran.stderr
        # another file, or other arguments, than the live watch's: refused, not run as the watch's
        (proj / "other.py").write_text("print('other ran')\n")
        other = devloop("run", "other.py", "-p", "mirror", cwd=proj, timeout=60)
        assert other.returncode == 2 and "runs nb.py, not other.py" in other.stderr, other.stdout + other.stderr
        assert "other ran" not in other.stdout
        argued = devloop("run", "nb.py", "-p", "mirror", "--", "--epochs", "3", cwd=proj, timeout=60)
        assert argued.returncode == 2, argued.stdout + argued.stderr
        assert "with no arguments, not with --epochs 3" in argued.stderr and "devloop stop -p mirror" in argued.stderr
    finally:
        assert w.stop() == 0
    assert x


def test_a_wrong_secret_is_refused_with_the_fix(proj: Path) -> None:
    w = Watch(proj, "nb.py", "-p", "mirror", "--detach", timeout=60)
    w.until(lambda e: e["event"] == "run_done")
    assert w.stop() == 0
    record = proj / ".devloop" / "sessions" / "mirror.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "secret": "0" * 32}))
    res = devloop("watch", "nb.py", "-p", "mirror", cwd=proj, timeout=60)
    assert res.returncode == 2
    assert "refused" in res.stderr and "devloop stop -p mirror" in res.stderr


def test_a_second_watch_takes_over_and_the_first_stops_without_ending_the_session(proj: Path) -> None:
    first = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
    try:
        first.until(lambda e: e["event"] == "run_done")
        kernel = _session_pid(proj)
        second = Watch(proj, "nb.py", "-p", "mirror", timeout=60)
        try:
            second.until(lambda e: e["event"] == "target" and e["state"] == "attached")
            assert [e["cell"] for e in second.until(lambda e: e["event"] == "run_done")
                    if e["event"] == "cell_start"] == []  # all up to date
            told = first.until(lambda e: e["event"] == "target" and e["state"] == "detached")
            assert "took it over" in told[-1]["message"]
            assert first.proc.wait(timeout=30) == 0  # the first one stops by itself...
            assert pid_alive(kernel)  # ...and leaves the session to the second
            (proj / "nb.py").write_text(NB.replace('print("X is", X)', 'print("X is", X, "2nd")'))
            evs = second.until(lambda e: e["event"] == "run_done")
            assert [e["cell"] for e in evs if e["event"] == "cell_start"] == [1]
        finally:
            assert second.stop() == 0
    finally:
        if first.proc.poll() is None:
            first.stop()


def test_a_session_of_another_devloop_version_is_reported_with_the_fix_and_left_alone(proj: Path, tmp_path) -> None:
    """issue 14 item 7: the kernel there runs another agent bundle: refused with `devloop stop`, no crash."""
    import subprocess
    import sys

    from devloop.core import session_record
    from devloop.core.agent_bundle import write_bundle

    wd = tmp_path / "wd"
    wd.mkdir()
    record = session_record.SessionRecord(profile="mirror", kind="local", workdir=str(wd), file="nb.py")
    session_record.save(proj, record)
    bundle = write_bundle(tmp_path / "agent")
    relay = subprocess.Popen([sys.executable, "-u", str(bundle), "attach", "--start"], cwd=wd,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    hello = {"op": "hello", "secret": record.secret, "since": None,
             "start": {"session": record.session, "agent": "0" * 64, "idle_stop_s": 0}}
    relay.stdin.write((json.dumps(hello) + "\n").encode())
    relay.stdin.flush()
    assert json.loads(relay.stdout.readline())["state"] == "started"
    assert json.loads(relay.stdout.readline())["type"] == "ready"
    relay.kill()
    relay.wait()
    kernel = _session_pid(proj)
    res = devloop("watch", "nb.py", "-p", "mirror", cwd=proj, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "another devloop version" in res.stderr and "devloop stop -p mirror" in res.stderr
    assert "Traceback" not in res.stderr
    assert pid_alive(kernel)  # reported, not stopped behind the user's back
    assert devloop("stop", "-p", "mirror", cwd=proj, timeout=60).returncode == 0
    deadline = time.monotonic() + 10
    while pid_alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(kernel)
