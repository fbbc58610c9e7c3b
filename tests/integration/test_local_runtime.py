"""Issue 20 (runtime) and issue 18 item 4 end to end on `local`: the real CLI, agent, processes.

Each test runs the example of its item and compares with what `python file.py` does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.clitools import DEVLOOP, Watch, devloop, events, last, outputs


def python(file: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, file, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_name_error_keeps_pythons_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "nb.py").write_text("# %%\nX_test = [1, 2]\n# %%\nprint(len(X_tes))\n")
    res = devloop("run", "nb.py", "--json", cwd=tmp_path)
    assert res.returncode == 1
    error = last(events(res.stdout), "error")
    assert error["message"] == "name 'X_tes' is not defined. Did you mean: 'X_test'?"
    assert error["traceback"].rstrip().endswith("Did you mean: 'X_test'?")
    text = devloop("run", "nb.py", cwd=tmp_path)
    assert "NameError: name 'X_tes' is not defined. Did you mean: 'X_test'?" in text.stderr


def test_json_error_carries_the_traceback_and_a_printed_line_is_one_output_event(tmp_path: Path) -> None:
    (tmp_path / "sum.py").write_text('print("sum", 45)\n')
    res = devloop("run", "sum.py", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    outs = [e for e in events(res.stdout) if e["event"] == "output"]
    assert [e["text"] for e in outs] == ["sum 45\n"]
    (tmp_path / "bad.py").write_text("# %%\ndef f():\n    return 1 / 0\n# %%\nf()\n")
    error = last(events(devloop("run", "bad.py", "--json", cwd=tmp_path).stdout), "error")
    assert error["traceback"].startswith("Traceback (most recent call last):\n")
    assert 'File "bad.py", line 3, in f' in error["traceback"]
    assert error["traceback"].rstrip().endswith("ZeroDivisionError: division by zero")


EXIT3 = textwrap.dedent("""\
    # %% load
    import sys
    state = 41
    print("before")
    # %% stop
    if state == 41:
        sys.exit(3)
    # %% after
    print("never")
    """)


def test_sys_exit_code_is_the_run_exit_code_and_stops_the_pass(tmp_path: Path) -> None:
    (tmp_path / "nb.py").write_text(EXIT3)
    res = devloop("run", "nb.py", "--json", cwd=tmp_path)
    py = python("nb.py", cwd=tmp_path)
    assert (res.returncode, py.returncode) == (3, 3)
    evs = events(res.stdout)
    assert outputs(evs) == py.stdout == "before\n"
    assert not [e for e in evs if e["event"] == "error"]
    assert last(evs, "cell_done") == {"event": "cell_done", "cell": 1, "ok": False, "ms": last(evs, "cell_done")["ms"],
                                      "exit_code": 3}
    assert (last(evs, "run_done")["ok"], last(evs, "run_done")["exit_code"]) == (False, 3)
    (tmp_path / "zero.py").write_text(EXIT3.replace("sys.exit(3)", "sys.exit(0)"))
    res = devloop("run", "zero.py", "--json", cwd=tmp_path)
    assert res.returncode == python("zero.py", cwd=tmp_path).returncode == 0
    assert "never" not in outputs(events(res.stdout))
    assert last(events(res.stdout), "run_done")["ok"] is True


def test_the_kernel_survives_sys_exit_for_the_next_pass(tmp_path: Path) -> None:
    (tmp_path / "nb.py").write_text(EXIT3)
    w = Watch(tmp_path, "nb.py")
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        assert last(first, "run_done")["exit_code"] == 3
        (tmp_path / "nb.py").write_text(EXIT3.replace("if state == 41", "if state == 0")
                                        .replace('print("never")', 'print("state", state)'))
        second = w.until(lambda e: e["event"] == "run_done")
        assert last(second, "run_done")["ok"] is True
        assert "state 41" in outputs(second)
        assert not [e for e in second if e["event"] == "cell_start" and e["cell"] == 0]  # state kept
    finally:
        w.stop()


ARGS = textwrap.dedent("""\
    # %%
    import argparse, sys
    print(sys.argv)
    # %%
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    print(parser.parse_args())
    """)


def test_script_arguments_after_double_dash_are_sys_argv(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(ARGS)
    res = devloop("run", "train.py", "--", "--epochs", "3", cwd=tmp_path)
    py = python("train.py", "--epochs", "3", cwd=tmp_path)
    assert res.returncode == py.returncode == 0, res.stderr
    assert "[0] ['train.py', '--epochs', '3']" in res.stdout
    assert "[1] Namespace(epochs=3)" in res.stdout
    assert py.stdout == "['train.py', '--epochs', '3']\nNamespace(epochs=3)\n"
    (tmp_path / "script.py").write_text("import sys\nprint(sys.argv)\n")  # no markers: a process
    res = devloop("run", "script.py", "--json", "--", "a", "b c", cwd=tmp_path)
    assert outputs(events(res.stdout)) == python("script.py", "a", "b c", cwd=tmp_path).stdout


def test_run_args_in_config_and_the_command_line_replaces_them(tmp_path: Path) -> None:
    (tmp_path / "devloop.toml").write_text('[project]\nname = "p"\n[run]\nargs = ["--epochs", "7"]\n')
    (tmp_path / "train.py").write_text(ARGS)
    res = devloop("run", "train.py", "--json", cwd=tmp_path)
    assert "Namespace(epochs=7)" in outputs(events(res.stdout))
    res = devloop("run", "train.py", "--json", "--", "--epochs", "2", cwd=tmp_path)
    assert "Namespace(epochs=2)" in outputs(events(res.stdout))
    (tmp_path / "known.py").write_text(ARGS.replace("parser.parse_args()", "parser.parse_known_args()[0]"))
    w = Watch(tmp_path, "known.py", "--json", "--", "--epochs", "5")  # Watch adds a --json the file ignores
    try:
        assert "Namespace(epochs=5)" in outputs(w.until(lambda e: e["event"] == "run_done"))
    finally:
        w.stop()


JOBLIB = textwrap.dedent("""\
    # %% fit
    import math
    from joblib import Parallel, delayed
    squares = Parallel(n_jobs=2)(delayed(math.sqrt)(i) for i in range(10))
    print("sum", round(sum(squares), 3))
    """)


def test_joblib_worker_pools_end_cleanly_with_the_kernel(tmp_path: Path) -> None:
    pytest.importorskip("joblib")
    (tmp_path / "jl.py").write_text(JOBLIB)
    for _ in range(3):  # the false traceback came in 7 of 10 runs
        res = devloop("run", "jl.py", "--json", cwd=tmp_path, timeout=120)
        assert res.returncode == 0, res.stderr
        evs = events(res.stdout)
        assert outputs(evs) == "sum 19.306\n"
        assert not [e for e in evs if e["event"] == "output" and e["cell"] == -1]
        assert "Traceback" not in res.stderr and "LokyProcess" not in res.stdout + res.stderr


READER = textwrap.dedent("""\
    # %% read
    import time
    for i in range(2000):
        print("row", i)
    # %% slow
    for i in range(50):
        print("more", i)
        time.sleep(0.01)
    """)


@pytest.mark.parametrize("json_lines", [False, True], ids=["text", "json"])
def test_a_reader_that_leaves_stops_the_run_quietly(tmp_path: Path, json_lines: bool) -> None:
    (tmp_path / "reader.py").write_text(READER)
    cmd = " ".join(DEVLOOP + ["run", "reader.py"] + (["--json"] if json_lines else []))
    res = subprocess.run(f"{cmd} | head -6; exit ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 141
    assert res.stderr == ""
    assert len(res.stdout.splitlines()) == 6


ASK = textwrap.dedent("""\
    # %% ask
    name = input("name? ")
    print("hello", name)
    # %% rest
    import sys
    print(sorted(sys.stdin.read().split()))
    """)


def test_input_reads_a_pipe_as_python_does(tmp_path: Path) -> None:
    (tmp_path / "ask.py").write_text(ASK)
    res = subprocess.run(DEVLOOP + ["run", "ask.py", "--json"], cwd=tmp_path, input="alice\nb a\nc\n",
                         capture_output=True, text=True, timeout=60)
    py = subprocess.run([sys.executable, "ask.py"], cwd=tmp_path, input="alice\nb a\nc\n",
                        capture_output=True, text=True, timeout=60)
    assert res.returncode == py.returncode == 0, res.stderr
    evs = events(res.stdout)
    assert outputs(evs) == py.stdout == "name? hello alice\n['a', 'b', 'c']\n"
    asked = [e for e in evs if e["event"] == "input"]
    assert [(e["cell"], e["prompt"]) for e in asked][:2] == [(0, "name? "), (1, "")]


def test_input_without_stdin_says_why(tmp_path: Path) -> None:
    (tmp_path / "ask.py").write_text(ASK)
    res = subprocess.run(DEVLOOP + ["run", "ask.py", "--json"], cwd=tmp_path, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    error = last(events(res.stdout), "error")
    assert (error["type"], error["line"]) == ("EOFError", 2)
    assert error["message"].startswith("EOF when reading a line (devloop's stdin has no more lines: pipe the input in")


def run_at_a_terminal(cwd: Path, file: str, prompt: bytes, answer: bytes, *, no_echo: bool = False) -> str:
    """`devloop run FILE` on a pty; `answer` is typed once `prompt` showed (and, with `no_echo`,
    once the terminal's echo is off). Returns all it printed."""
    import os
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(DEVLOOP + ["run", file], cwd=cwd, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        answered = False
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and prompt in seen and not (no_echo and termios.tcgetattr(master)[3] & termios.ECHO):
                os.write(master, answer)
                answered = True
            if b"run ok" in seen or proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                break
        assert proc.wait(30) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return seen.decode(errors="replace")


def test_input_from_the_terminal_shows_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "ask.py").write_text(ASK.split("# %% rest")[0])
    text = run_at_a_terminal(tmp_path, "ask.py", b"name? ", b"bob\n")
    assert "[0] name? " in text and "hello bob" in text
    assert text.index("name? ") < text.index("hello bob")


def test_watch_reads_input_from_its_stdin_and_the_kernel_goes_on(tmp_path: Path) -> None:
    (tmp_path / "ask.py").write_text(ASK.split("# %% rest")[0])
    proc = subprocess.Popen(DEVLOOP + ["watch", "ask.py", "--json"], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("carol\n")
        proc.stdin.flush()
        got = []
        for line in proc.stdout:
            if line.startswith("{"):
                got.append(__import__("json").loads(line))
                if got[-1]["event"] == "run_done":
                    break
        assert outputs(got) == "name? hello carol\n"
        assert last(got, "run_done")["ok"] is True
    finally:
        proc.send_signal(__import__("signal").SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_session_asks_a_waiting_input_once_after_reattaching(tmp_path: Path) -> None:
    import json
    import signal

    (tmp_path / "ask.py").write_text(ASK.split("# %% rest")[0])
    watch = subprocess.Popen(DEVLOOP + ["watch", "ask.py", "--json"], cwd=tmp_path, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    try:
        assert watch.stdout is not None
        for line in watch.stdout:  # the cell waits in input(); nobody answers this front end
            if line.startswith("{") and json.loads(line)["event"] == "input":
                break
    finally:
        watch.send_signal(signal.SIGKILL)  # the session (and its waiting cell) goes on
        watch.wait(30)
    try:
        res = subprocess.run(DEVLOOP + ["run", "ask.py", "--json"], cwd=tmp_path, input="dave\n",
                             capture_output=True, text=True, timeout=120)
        evs = events(res.stdout)
        assert res.returncode == 0, res.stdout + res.stderr
        assert len([e for e in evs if e["event"] == "input"]) == 1  # the replayed one is not asked again
        assert "hello dave\n" in outputs(evs)
    finally:
        devloop("stop", cwd=tmp_path)


SECRET = textwrap.dedent("""\
    # %% login
    import getpass
    token = getpass.getpass("token? ")
    print("got", len(token), "characters")
    """)


def test_getpass_reads_a_pipe_and_is_a_password_request(tmp_path: Path) -> None:
    (tmp_path / "secret.py").write_text(SECRET)
    res = subprocess.run(DEVLOOP + ["run", "secret.py", "--json"], cwd=tmp_path, input="hunter22\n",
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    evs = events(res.stdout)
    (asked,) = [e for e in evs if e["event"] == "input"]
    assert asked["prompt"] == "token? " and asked["password"] is True
    assert "got 8 characters" in outputs(evs) and "GetPassWarning" not in res.stdout + res.stderr


def test_getpass_at_the_terminal_does_not_echo_the_secret(tmp_path: Path) -> None:
    (tmp_path / "secret.py").write_text(SECRET)
    text = run_at_a_terminal(tmp_path, "secret.py", b"token? ", b"hunter22\n", no_echo=True)
    assert "token? " in text and "got 8 characters" in text
    assert "hunter22" not in text  # the terminal did not echo it
