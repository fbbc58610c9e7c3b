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
