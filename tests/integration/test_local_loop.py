"""End to end on the `local` profile: the real CLI, the real agent, real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.clitools import CELLS, DEVLOOP, Watch, devloop, events, last, outputs
from tests.clitools import pid_alive as _alive


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "nb.py").write_text(CELLS)
    return tmp_path


def test_run_json_all_cells_in_a_folder_without_config(project: Path) -> None:
    res = devloop("run", "nb.py", "--json", cwd=project)
    assert res.returncode == 0, res.stderr
    evs = events(res.stdout)
    starts = [e for e in evs if e["event"] == "cell_start"]
    assert [(e["cell"], e["line"], e["title"]) for e in starts] == [(0, 1, "load"), (1, 5, "double"), (2, 9, "total")]
    assert outputs(evs, 0) == "loaded 3\n"
    assert outputs(evs, 2) == "total 12\n"
    done = [e for e in evs if e["event"] == "run_done"]
    assert done[-1]["ok"] is True and done[-1]["exit_code"] == 0 and done[-1]["cells_run"] == 3
    assert all(set(e) >= {"event"} for e in evs)


def test_readable_output_is_prefixed_by_cell(project: Path) -> None:
    res = devloop("run", "nb.py", cwd=project)
    assert res.returncode == 0, res.stderr
    assert "[0] loaded 3" in res.stdout
    assert "[2] total 12" in res.stdout
    assert "run ok: 3 cells" in res.stdout


def test_failing_cell_stops_the_pass_and_points_at_the_users_line(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("# %%\nx = 1\n# %% boom\ny = 2\nz = y / 0\n# %%\nprint('never')\n")
    res = devloop("run", "bad.py", "--json", cwd=tmp_path)
    assert res.returncode == 1
    evs = events(res.stdout)
    err = [e for e in evs if e["event"] == "error"][0]
    assert (err["cell"], err["type"], err["file"], err["line"]) == (1, "ZeroDivisionError", "bad.py", 5)
    assert not [e for e in evs if e["event"] == "cell_start" and e["cell"] == 2]
    assert "never" not in outputs(evs)
    assert last(evs, "run_done")["ok"] is False and last(evs, "run_done")["exit_code"] == 1


def test_github_annotation_on_error(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("# %%\nraise ValueError('bad, value')\n")
    res = devloop("run", "bad.py", cwd=tmp_path, env={"GITHUB_ACTIONS": "true"})
    assert res.returncode == 1
    assert "::error file=bad.py,line=2,title=ValueError::bad, value" in res.stdout


def test_script_exit_code_is_mirrored_and_output_streams(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("import sys\nprint('hello from script')\nsys.exit(3)\n")
    res = devloop("run", "script.py", "--json", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    evs = events(res.stdout)
    assert "hello from script" in outputs(evs)
    assert last(evs, "run_done")["exit_code"] == 3


def test_fd_level_and_child_process_output_never_corrupt_the_protocol(tmp_path: Path) -> None:
    (tmp_path / "fd.py").write_text(textwrap.dedent("""\
        # %%
        import os, subprocess, sys
        os.write(1, b"raw fd write\\n")
        os.write(2, b"raw stderr\\n")
        subprocess.run(["echo", "from child"])
        print('{"type": "done", "id": "1", "ok": true}')
        os.write(1, b"\\xff\\xfe binary\\n")
        """))
    res = devloop("run", "fd.py", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    evs = events(res.stdout)
    text = outputs(evs)
    assert "raw fd write" in text and "from child" in text and "raw stderr" in text
    assert '{"type": "done", "id": "1", "ok": true}' in text
    assert "\ufffd\ufffd binary" in text
    assert [e["stream"] for e in evs if e["event"] == "output" and "raw stderr" in e["text"]] == ["stderr"]


def test_kernel_death_is_reported(tmp_path: Path) -> None:
    (tmp_path / "die.py").write_text("# %%\nprint('before')\n# %%\nimport os\nos._exit(3)\n# %%\nprint('after')\n")
    res = devloop("run", "die.py", "--json", cwd=tmp_path)
    assert res.returncode == 1
    evs = events(res.stdout)
    err = [e for e in evs if e["event"] == "error"][0]
    assert err["type"] == "KernelDied" and "code 3" in err["message"]


def test_segfault_is_reported_as_a_signal(tmp_path: Path) -> None:
    (tmp_path / "segv.py").write_text("# %%\nimport ctypes\nctypes.string_at(0)\n")
    res = devloop("run", "segv.py", "--json", cwd=tmp_path)
    assert res.returncode == 1
    err = [e for e in events(res.stdout) if e["event"] == "error"][0]
    assert err["type"] == "KernelDied" and "signal 11" in err["message"]


def test_big_output_arrives_whole(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("# %%\nimport sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(50 * 1024):\n    sys.stdout.write(line)\n")
    proc = subprocess.Popen(DEVLOOP + ["run", "big.py", "--json"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    total = 0
    final = None
    assert proc.stdout is not None
    for line in proc.stdout:
        e = json.loads(line)
        if e["event"] == "output":
            total += len(e["text"])
        if e["event"] == "run_done":
            final = e
    assert proc.wait(timeout=120) == 0
    assert total == 50 * 1024 * 1024
    assert final is not None and final["ok"]


@pytest.mark.parametrize("content,needle", [
    ("[project\nname = 'x'\n", "devloop.toml:1"),
    ("[project]\nnmae = 'x'\n", "did you mean 'name'"),
    ("[run]\nrerun = 'sideways'\n", "devloop.toml:2"),
])
def test_config_errors_are_one_line_exit_2(tmp_path: Path, content: str, needle: str) -> None:
    (tmp_path / "devloop.toml").write_text(content)
    (tmp_path / "nb.py").write_text(CELLS)
    res = devloop("run", "nb.py", cwd=tmp_path)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_unknown_profile_exit_2(project: Path) -> None:
    res = devloop("run", "nb.py", "--profile", "gpu-box", cwd=project)
    assert res.returncode == 2
    assert "gpu-box" in res.stderr and "Traceback" not in res.stderr


def test_missing_file_and_non_utf8_file(tmp_path: Path) -> None:
    res = devloop("run", "nope.py", cwd=tmp_path)
    assert res.returncode == 2 and "nope.py" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "latin.py").write_bytes(b"# %%\nprint('caf\xe9')\n")
    res = devloop("run", "latin.py", cwd=tmp_path)
    assert res.returncode == 2
    assert "latin.py:2: not UTF-8" in res.stderr and "Traceback" not in res.stderr


def test_no_file_and_no_entry_is_a_usage_error(tmp_path: Path) -> None:
    res = devloop("run", cwd=tmp_path)
    assert res.returncode == 2 and "[project].entry" in res.stderr


def test_version_and_help() -> None:
    res = subprocess.run(DEVLOOP + ["--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("devloop ")
    res = subprocess.run(DEVLOOP + ["run", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--profile" in res.stdout and "--json" in res.stdout


def test_verbose_shows_what_devloop_does(project: Path) -> None:
    res = devloop("-v", "run", "nb.py", cwd=project)
    assert res.returncode == 0
    assert "profile 'local'" in res.stderr
    assert "kernel" in res.stderr


def test_local_workdir_profile_syncs_into_that_folder(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    remote = tmp_path / "remote"
    (proj / "profiles").mkdir(parents=True)
    (proj / "profiles" / "mirror.yaml").write_text(f"kind: local\nworkdir: {remote}\n")
    (proj / "nb.py").write_text("# %%\nimport os\nprint(os.getcwd())\nimport helper\nprint(helper.VALUE)\n")
    (proj / "helper.py").write_text("VALUE = 42\n")
    (proj / ".gitignore").write_text("data/\n")
    (proj / "data").mkdir()
    (proj / "data" / "big.bin").write_bytes(b"0" * 1000)
    res = devloop("run", "nb.py", "--profile", "mirror", "--json", cwd=proj)
    assert res.returncode == 0, res.stderr
    evs = events(res.stdout)
    text = outputs(evs)
    assert str(remote) in text and "42" in text
    assert (remote / "helper.py").read_text() == "VALUE = 42\n"
    assert not (remote / "data").exists()
    sync = [e for e in evs if e["event"] == "sync"]
    assert sync and sync[0]["files"] >= 3
    # a second run sends nothing: the remote's manifest says it has it all
    res = devloop("run", "nb.py", "--profile", "mirror", "--json", cwd=proj)
    assert res.returncode == 0
    assert not [e for e in events(res.stdout) if e["event"] == "sync"]


# ------------------------------------------------------------------------------------- watch


def test_watch_reruns_only_the_edited_last_cell_and_exits_cleanly(project: Path) -> None:
    w = Watch(project, "nb.py")
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        kernel_pid = [e for e in w.seen if e["event"] == "ready"][0]["pid"]
        assert [e["cell"] for e in first if e["event"] == "cell_start"] == [0, 1, 2]
        time.sleep(0.3)
        (project / "nb.py").write_text(CELLS.replace('print("total", sum(doubled))', 'print("sum is", sum(doubled))'))
        second = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in second if e["event"] == "cell_start"] == [2]
        assert outputs(second) == "sum is 12\n"
        # an unchanged save reruns nothing
        (project / "nb.py").write_text((project / "nb.py").read_text())
        assert w.quiet_for(1.5) == []
    finally:
        code = w.stop(signal.SIGINT)
    assert code == 0
    deadline = time.monotonic() + 5
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(kernel_pid), "the kernel outlived devloop watch"


def test_watch_sigterm_leaves_no_process_behind(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text("# %%\nimport time\nprint('sleeping', flush=True)\ntime.sleep(600)\n")
    w = Watch(tmp_path, "slow.py")
    w.until(lambda e: e["event"] == "output" and "sleeping" in e["text"])
    kernel_pid = [e for e in w.seen if e["event"] == "ready"][0]["pid"]
    assert w.stop(signal.SIGTERM) == 0
    deadline = time.monotonic() + 5
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(kernel_pid)


def test_watch_syntax_error_then_fix(project: Path) -> None:
    w = Watch(project, "nb.py")
    try:
        w.until(lambda e: e["event"] == "run_done")
        broken = CELLS.replace("doubled = [x * 2 for x in data]", "doubled = [x * 2 for x in data")
        time.sleep(0.3)
        (project / "nb.py").write_text(broken)
        evs = w.until(lambda e: e["event"] == "run_done")
        err = [e for e in evs if e["event"] == "error"][0]
        assert err["type"] == "SyntaxError" and err["cell"] == 1 and err["line"] == 6
        (project / "nb.py").write_text(CELLS.replace("print(\"doubled\", doubled)", "print(\"twice\", doubled)"))
        evs = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in evs if e["event"] == "cell_start"] == [1, 2]
        assert last(evs, "run_done")["ok"] is True
        assert "twice [2, 4, 6]" in outputs(evs)
    finally:
        w.stop()


def test_watch_script_reruns_as_a_fresh_process(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("import os\nprint('pid', os.getpid())\n")
    w = Watch(tmp_path, "s.py")
    try:
        evs = w.until(lambda e: e["event"] == "run_done")
        pid1 = outputs(evs).split()[1]
        time.sleep(0.3)
        (tmp_path / "s.py").write_text("import os\nprint('pid', os.getpid())\nprint('again')\n")
        evs = w.until(lambda e: e["event"] == "run_done")
        text = outputs(evs)
        assert "again" in text and text.split()[1] != pid1
    finally:
        w.stop()


def test_watch_after_kernel_death_next_save_starts_fresh(tmp_path: Path) -> None:
    src = "# %%\nx = 41\n# %%\nimport os\nif x == 41:\n    os._exit(3)\n# %%\nprint('x is', x)\n"
    (tmp_path / "d.py").write_text(src)
    w = Watch(tmp_path, "d.py")
    try:
        evs = w.until(lambda e: e["event"] == "run_done")
        assert [e for e in evs if e["event"] == "error"][0]["type"] == "KernelDied"
        time.sleep(0.3)
        (tmp_path / "d.py").write_text(src.replace("x == 41", "x == 0"))
        evs = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in evs if e["event"] == "cell_start"] == [0, 1, 2]
        assert "x is 41" in outputs(evs)
    finally:
        w.stop()


def test_run_sigint_interrupts_a_never_ending_cell_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "forever.py").write_text("# %%\nprint('spinning', flush=True)\nwhile True:\n    pass\n")
    w = Watch(tmp_path, "forever.py", command="run")
    w.until(lambda e: e["event"] == "output" and "spinning" in e["text"])
    kernel_pid = [e for e in w.seen if e["event"] == "ready"][0]["pid"]
    assert w.stop(signal.SIGINT) == 130
    deadline = time.monotonic() + 5
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(kernel_pid)


def test_malformed_profile_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "box.yaml").write_text("kind: ssh\nhost: [unclosed\n")
    (tmp_path / "nb.py").write_text(CELLS)
    res = devloop("run", "nb.py", "--profile", "box", cwd=tmp_path)
    assert res.returncode == 2
    assert "box.yaml:" in res.stderr and "Traceback" not in res.stderr


CHILD_IGNORING_SIGTERM = (
    "# %%\n"
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
    "print('child', child.pid, flush=True)\n"
)


def test_a_child_that_ignores_sigterm_does_not_outlive_run(tmp_path: Path) -> None:
    """issue 21 item 8: a process forked from a cell (ignoring SIGTERM) ends with `devloop run`."""
    import re
    import time

    from tests.clitools import pid_alive

    (tmp_path / "c.py").write_text(CHILD_IGNORING_SIGTERM)
    res = devloop("run", "c.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pid = int(re.search(r"child (\d+)", res.stdout).group(1))
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), "the cell's child outlived devloop run"


def test_a_daemon_a_cell_started_does_not_outlive_run(tmp_path: Path) -> None:
    """issue 21 item 8: a double-forked setsid() daemon ignoring SIGTERM ends with `devloop run`."""
    import re

    from tests.unit.test_agent_session import DAEMON

    (tmp_path / "d.py").write_text("# %%\n" + DAEMON)
    res = devloop("run", "d.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pid = int(re.search(r"daemon (\d+)", res.stdout).group(1))
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the cell's daemon outlived devloop run"
