"""Sessions that outlive the connection (issue 14), as one set of scenarios every remote target
runs through the real CLI: ssh, ssh+docker, docker and kubernetes each supply how to drop the
link and how to see what is left on the target; the rest is the same.

The notebook's first cell draws `X = random.random()`: a rerun of that cell would change X, so a
later cell printing the same X proves the kernel kept its state.
"""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from pathlib import Path
from typing import Callable

from tests.clitools import Watch, devloop

NB = textwrap.dedent("""\
    # %% load
    import random, time
    X = random.random()
    time.sleep(1)
    print("X =", X, flush=True)

    # %% show
    print("show", 0, X, flush=True)
    """)
LAST_CELL = 'print("show", 0, X, flush=True)\n'


def set_last_cell(nb: Path, body: str) -> None:
    time.sleep(0.3)  # a distinct mtime for the watcher
    nb.write_text(NB.replace(LAST_CELL, body))


def ran(evs: list[dict]) -> list[int]:
    return [e["cell"] for e in evs if e["event"] == "cell_start"]


def text_of(evs: list[dict]) -> str:
    return "".join(e["text"] for e in evs if e["event"] == "output")


def x_value(evs: list[dict]) -> str:
    found = re.findall(r"X = ([0-9.e-]+)", text_of(evs))
    assert len(found) == 1, text_of(evs)
    return found[0]


def run_done(e: dict) -> bool:
    return e["event"] == "run_done"


def wait_for(pred: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


# The first pass starts the target and the session kernel; a kernel start may take up to 3
# tries of 20 s (core/kernel.py START_TRIES), so the first pass gets longer than the rest.
FIRST_PASS_S = 150


def stop_session(project: Path, profile: str) -> None:
    """`devloop stop -p PROFILE` (the finally of every scenario): bounded, never raising."""
    try:
        devloop("stop", "-p", profile, "--force", cwd=project, timeout=180)
    except Exception:  # noqa: BLE001 - cleanup of a test that may already have failed
        pass


def _end(w: Watch) -> None:
    if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait(timeout=30)


def edit_reruns_only_the_last_cell(w: Watch, nb: Path, x: str, n: int) -> list[dict]:
    set_last_cell(nb, f'print("show", {n}, X, flush=True)\n')
    evs = w.until(run_done)
    assert ran(evs) == [1], evs
    assert text_of(evs) == f"show {n} {x}\n", evs
    return evs


def drop_reattaches(project: Path, profile: str, drop: Callable[[Watch], None], timeout: float = 40) -> None:
    """(a) The link drops twice (`drop(watch)`: idle, then with a cell running): each time the same kernel is
    reattached, an edit of the last cell reruns only it with the same X, and the output of the
    cell that ran through the drop is shown exactly once."""
    nb = project / "nb.py"
    nb.write_text(NB)
    w = Watch(project, "nb.py", "--profile", profile, timeout=timeout)
    try:
        first = w.until(run_done, timeout=FIRST_PASS_S)
        assert ran(first) == [0, 1], first
        x = x_value(first)
        kernel_pid = [e for e in first if e["event"] == "ready"][-1]["pid"]

        drop(w)  # while idle
        w.until(lambda e: e["event"] == "target" and e["state"] == "ready" and "reattached" in e["message"])
        edit_reruns_only_the_last_cell(w, nb, x, 1)

        # a cell still running during the drop finishes there; its output is shown once
        mark = len(w.seen)
        set_last_cell(nb, 'print("sleeping", flush=True)\ntime.sleep(3)\nprint("late", 2, X, flush=True)\n')
        w.until(lambda e: e["event"] == "output" and "sleeping" in e["text"])
        drop(w)
        w.until(run_done)
        evs = w.seen[mark:]
        assert ran(evs) == [1], evs
        assert any(e["event"] == "target" and "reattached" in e["message"] for e in evs), evs
        assert [e["ok"] for e in evs if e["event"] == "cell_done"] == [True], evs
        assert text_of(w.seen).count(f"late 2 {x}\n") == 1, text_of(w.seen)
        assert text_of(w.seen).count("sleeping\n") == 1, text_of(w.seen)
        assert not any(e["event"] == "error" for e in w.seen), [e for e in w.seen if e["event"] == "error"]

        edit_reruns_only_the_last_cell(w, nb, x, 3)
        assert 0 not in ran(w.seen[len(first):])
        pids = {e["pid"] for e in w.seen if e["event"] == "ready"}
        assert pids == {kernel_pid}, pids  # never a fresh kernel
    finally:
        try:
            assert w.stop() == 0
        finally:
            _end(w)
            stop_session(project, profile)


def killed_front_end_detaches(project: Path, profile: str, leftovers: Callable[[], list],
                              timeout: float = 40) -> None:
    """(b) A SIGKILLed `devloop watch` is a detach: the next one attaches (and says so), waits for
    the cell that ran on meanwhile (its output once), reruns only the edited last cell with the
    same X. Then a wrong secret is refused (exit 2, one clear line), and `devloop stop` leaves
    nothing behind (`leftovers()` empty)."""
    nb = project / "nb.py"
    nb.write_text(NB)
    w1 = Watch(project, "nb.py", "--profile", profile, timeout=timeout)
    w2 = None
    try:
        first = w1.until(run_done, timeout=FIRST_PASS_S)
        assert ran(first) == [0, 1], first
        x = x_value(first)
        kernel_pid = [e for e in first if e["event"] == "ready"][-1]["pid"]
        set_last_cell(nb, 'print("sleeping", flush=True)\ntime.sleep(3)\nprint("late", 1, X, flush=True)\n')
        try:
            w1.until(lambda e: e["event"] == "output" and "sleeping" in e["text"])
        except AssertionError:
            raise AssertionError(f"no rerun after the edit; saw {w1.seen[len(first):]}") from None
        w1.proc.send_signal(signal.SIGKILL)
        w1.proc.wait(timeout=30)

        w2 = Watch(project, "nb.py", "--profile", profile, timeout=timeout)
        evs = w2.until(run_done, timeout=FIRST_PASS_S)
        attached = [e for e in evs if e["event"] == "target" and e["state"] == "attached"]
        assert attached and "attached to the running session" in attached[0]["message"], evs
        assert [e["pid"] for e in evs if e["event"] == "ready"] == [kernel_pid]
        assert 0 not in ran(evs), evs
        # the cell that ran on while nobody was attached: its output reaches the new front end once
        if f"late 1 {x}\n" not in text_of(w2.seen):
            w2.until(lambda e: e["event"] == "output" and "late 1" in e["text"], timeout=30)
        assert text_of(w2.seen).count(f"late 1 {x}\n") == 1, text_of(w2.seen)
        assert text_of(w2.seen).count("sleeping\n") <= 1, text_of(w2.seen)
        edit_reruns_only_the_last_cell(w2, nb, x, 2)
        w2.proc.send_signal(signal.SIGKILL)
        w2.proc.wait(timeout=30)

        # only the owner attaches: a wrong secret is refused with one clear line, exit 2
        record = project / ".devloop" / "sessions" / f"{profile}.json"
        data = json.loads(record.read_text())
        data["secret"] = "0" * 32
        record.write_text(json.dumps(data))
        res = devloop("watch", "nb.py", "--profile", profile, "--json", cwd=project, timeout=timeout)
        assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
        assert "refused" in res.stderr and "secret" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr, res.stderr
        assert "devloop stop" in res.stderr, res.stderr

        # `devloop stop` ends it all (it needs no secret: the exec channel is the owner's)
        res = devloop("stop", "-p", profile, cwd=project, timeout=180)
        assert res.returncode == 0, (res.stdout, res.stderr)
        assert "session stopped" in res.stdout, res.stdout
        wait_for(lambda: not leftovers(), 60, "nothing left on the target after `devloop stop`")
        assert not record.exists()
    finally:
        for w in (w1, w2):
            if w is not None:
                _end(w)
        stop_session(project, profile)


def idle_stop_ends_it(project: Path, profile: str, gone: Callable[[], bool], seconds: float = 90,
                      timeout: float = 40) -> None:
    """[session] idle_stop = "3s": with the front end killed and nothing running, the session
    stops by itself after that long, and `gone()` (no kernel / container / pod) turns true."""
    toml = project / "devloop.toml"
    toml.write_text(toml.read_text() + '\n[session]\nidle_stop = "3s"\n')
    nb = project / "nb.py"
    nb.write_text(NB)
    w = Watch(project, "nb.py", "--profile", profile, timeout=timeout)
    try:
        first = w.until(run_done, timeout=FIRST_PASS_S)
        assert ran(first) == [0, 1], first
        assert not gone()
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(timeout=30)
        wait_for(gone, seconds, "the idle session and its environment ended by themselves")
    finally:
        _end(w)
        stop_session(project, profile)
