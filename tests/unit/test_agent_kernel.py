"""The agent's kernel, driven as the real bundle in a subprocess speaking JSON lines.

Each test starts `python -u agent-<sha>.pyz kernel` in a temporary working directory, exactly as
a target starts it, and checks the events it writes. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from devloop.core.agent_bundle import write_bundle
from tests.agent_pythons import agent_pythons

WAIT_S = 20.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle"))


class Agent:
    """A kernel subprocess: send requests, collect events until a condition, with timeouts."""

    def __init__(self, bundle: Path, cwd: Path, python: str = sys.executable):
        self.python = python
        self.proc = subprocess.Popen(
            [python, "-u", str(bundle), "kernel"], cwd=cwd,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.events: queue.Queue = queue.Queue()
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.ready = self.next_event()
        assert self.ready["type"] == "ready", self.ready

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))  # a non-JSON line fails the test loudly
        self.events.put(None)  # EOF

    def _read_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    def send(self, **request) -> None:
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def send_raw(self, line: bytes) -> None:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def next_event(self, timeout: float = WAIT_S):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event from the kernel within {timeout} s") from None

    def until(self, predicate, timeout: float = WAIT_S) -> list:
        """Events up to and including the first one matching `predicate`."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            assert event is not None, f"kernel exited; events so far: {seen[-5:]}"
            seen.append(event)
            if predicate(event):
                return seen

    def until_output(self, rid: str, text: str, timeout: float = WAIT_S) -> list:
        """Events until the output of request `rid` so far contains `text` (chunks may split)."""
        got = []

        def seen(event) -> bool:
            if event["type"] == "out" and event["id"] == rid:
                got.append(event["data"])
            return text in "".join(got)

        return self.until(seen, timeout)

    def until_done(self, rid: str, timeout: float = WAIT_S) -> list:
        return self.until(lambda e: e["type"] == "done" and e["id"] == rid, timeout)

    def exec(self, rid: str, code: str, filename: str = "cell.py", first_line: int = 1) -> list:
        self.send(op="exec", id=rid, code=textwrap.dedent(code), filename=filename,
                  first_line=first_line)
        return self.until_done(rid)

    def wait_exit(self, timeout: float = WAIT_S) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="shutdown")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


@pytest.fixture(params=agent_pythons(), ids=lambda p: "py" + p.rsplit("python", 1)[-1])
def agent(request, bundle, tmp_path):
    """The kernel on this interpreter, and on Python 3.8 (the oldest the agent supports) if found."""
    a = Agent(bundle, tmp_path, request.param)
    yield a
    a.close()


def outputs(events, rid, stream=None) -> str:
    return "".join(e["data"] for e in events
                   if e["type"] == "out" and e["id"] == rid and stream in (None, e["stream"]))


def done_of(events, rid):
    (done,) = [e for e in events if e["type"] == "done" and e["id"] == rid]
    return done


def error_of(events, rid):
    (error,) = [e for e in events if e["type"] == "error" and e["id"] == rid]
    return error


def test_ready_tells_pid_python_cwd_and_packages(agent, tmp_path):
    ready = agent.ready
    assert ready["pid"] == agent.proc.pid
    version = subprocess.run([agent.python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert ready["python"] == version
    assert os.path.realpath(ready["cwd"]) == os.path.realpath(tmp_path)
    assert ("pytest" if agent.python == sys.executable else "pip") in ready["packages"]


def test_namespace_persists_and_cell_runs_as_main(agent, tmp_path):
    assert done_of(agent.exec("1", "x = 41"), "1")["ok"] is True
    events = agent.exec("2", """\
        import sys
        print(x + 1, __name__, __file__, sys.path[0], sys.argv)
    """)
    cell = tmp_path / "cell.py"
    assert outputs(events, "2") == f"42 __main__ {cell} {tmp_path} {[str(cell)]}\n"


def test_every_kind_of_output_arrives_before_done(agent):
    events = agent.exec("c", """\
        import os, subprocess, sys
        print("from print")
        os.write(1, b"from fd 1\\n")
        sys.stderr.write("to stderr\\n")
        subprocess.run(["echo", "from a child"], check=True)
        print("no newline", end="")
    """)
    assert events[-1]["type"] == "done" and events[-1]["ok"] is True
    assert outputs(events, "c", "stdout") == "from print\nfrom fd 1\nfrom a child\nno newline"
    assert outputs(events, "c", "stderr") == "to stderr\n"


def test_a_child_that_keeps_the_pipe_open_does_not_hold_done(agent):
    events = agent.exec("bg", """\
        import subprocess
        bg = subprocess.Popen(["sleep", "30"])
        print("started")
    """)
    assert done_of(events, "bg")["ok"] is True
    assert outputs(events, "bg") == "started\n"
    agent.exec("kill", "bg.kill(); bg.wait()")


def test_traceback_points_at_the_users_file_and_line(agent, tmp_path):
    source = textwrap.dedent("""\
        # %% setup
        import math

        # %% compute
        def ratio(a, b):
            return a / b

        value = ratio(1, 0)
    """)
    (tmp_path / "train.py").write_text(source)
    cell = source.split("# %% compute\n", 1)[1]
    events = agent.exec("t", cell, filename="train.py", first_line=5)
    error = error_of(events, "t")
    assert error["etype"] == "ZeroDivisionError"
    assert error["frames"] == [
        {"file": "train.py", "line": 8, "name": "<module>"},
        {"file": "train.py", "line": 6, "name": "ratio"},
    ]
    assert 'File "train.py", line 6, in ratio\n    return a / b' in error["traceback"]
    assert "devloop_agent" not in error["traceback"]
    assert done_of(events, "t")["ok"] is False


def test_syntax_error_reports_the_users_line(agent):
    events = agent.exec("s", "x = 1\ny = (\n", filename="model.py", first_line=10)
    error = error_of(events, "s")
    assert error["etype"] == "SyntaxError"
    assert error["frames"][-1]["file"] == "model.py"
    assert error["frames"][-1]["line"] == 11
    assert done_of(events, "s")["ok"] is False


def test_system_exit_ends_the_request_with_its_code_and_the_kernel_survives(agent):
    events = agent.exec("e", "import sys\nsys.exit(4)")
    assert not [e for e in events if e["type"] == "error"]  # as `python`: no traceback
    assert (done_of(events, "e")["ok"], done_of(events, "e")["exit_code"]) == (False, 4)
    zero = done_of(agent.exec("z", "raise SystemExit"), "z")
    assert (zero["ok"], zero["exit_code"]) == (True, 0)
    text = agent.exec("t", "import sys\nsys.exit('bye')")
    assert outputs(text, "t", "stderr") == "bye\n" and done_of(text, "t")["exit_code"] == 1
    assert outputs(agent.exec("next", "print('alive')"), "next") == "alive\n"


@pytest.mark.parametrize("body", ["time.sleep(30)", "while True:\n    pass"],
                         ids=["sleep", "busy-loop"])
def test_interrupt_stops_the_cell_and_the_kernel_survives(agent, body):
    agent.send(op="exec", id="long", code="import time\nprint('started', flush=True)\n" + body,
               filename="cell.py", first_line=1)
    agent.until_output("long", "started\n")
    agent.send(op="interrupt")
    events = agent.until_done("long")
    assert error_of(events, "long")["etype"] == "KeyboardInterrupt"
    assert error_of(events, "long")["frames"][-1]["file"] == "cell.py"
    assert done_of(events, "long")["ok"] is False
    assert outputs(agent.exec("after", "print('still here')"), "after") == "still here\n"


def test_requests_that_arrive_during_a_cell_are_queued(agent):
    agent.send(op="exec", id="a", code="import time\ntime.sleep(0.3)\nprint('a')",
               filename="c.py", first_line=1)
    agent.send(op="exec", id="b", code="print('b')", filename="c.py", first_line=1)
    events = agent.until_done("b")
    order = [(e["type"], e["id"]) for e in events if e["type"] in ("out", "done")]
    assert order == [("out", "a"), ("done", "a"), ("out", "b"), ("done", "b")]


def test_os_exit_in_a_cell_ends_the_process_with_its_code(agent):
    agent.send(op="exec", id="x", code="import os\nos._exit(3)", filename="c.py", first_line=1)
    assert agent.wait_exit() == 3
    remaining = []
    while (event := agent.next_event()) is not None:
        remaining.append(event)
    assert not any(e["type"] == "done" for e in remaining)


def test_segfault_ends_the_process_with_the_signal(agent):
    agent.send(op="exec", id="crash", code="import ctypes\nctypes.string_at(0)",
               filename="c.py", first_line=1)
    assert agent.wait_exit() == -signal.SIGSEGV
    deadline = time.monotonic() + WAIT_S
    while b"Fatal Python error" not in agent.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"Fatal Python error" in agent.stderr  # the crash dump goes to the real stderr


def test_run_mirrors_the_scripts_exit_code_and_output(agent, tmp_path):
    (tmp_path / "script.py").write_text(
        "import os, sys\nprint('hello', os.environ['DEVLOOP_X'])\nsys.exit(7)\n")
    agent.send(op="run", id="r", argv=[sys.executable, "script.py"], env={"DEVLOOP_X": "42"})
    events = agent.until_done("r")
    assert outputs(events, "r") == "hello 42\n"
    assert done_of(events, "r")["exit_code"] == 7
    assert done_of(events, "r")["ok"] is False


def test_a_second_run_stops_the_first(agent, tmp_path):
    (tmp_path / "slow.py").write_text("import time\nprint('slow', flush=True)\ntime.sleep(30)\n")
    agent.send(op="run", id="r1", argv=[sys.executable, "slow.py"], env={})
    agent.until_output("r1", "slow\n")
    agent.send(op="run", id="r2", argv=["true"], env={})
    events = agent.until_done("r2")
    assert done_of(events, "r1")["exit_code"] == -signal.SIGTERM
    assert done_of(events, "r2") == {**done_of(events, "r2"), "ok": True, "exit_code": 0}


def test_interrupt_reaches_the_run_child_and_kills_one_that_ignores_it(agent, tmp_path):
    (tmp_path / "stubborn.py").write_text(textwrap.dedent("""\
        import signal, sys, time
        if sys.argv[1] == "ignore":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("up", flush=True)
        time.sleep(30)
    """))
    for rid, mode, code in (("polite", "obey", -signal.SIGINT),
                            ("stubborn", "ignore", -signal.SIGKILL)):
        agent.send(op="run", id=rid, argv=[sys.executable, "stubborn.py", mode], env={})
        agent.until_output(rid, "up\n")
        agent.send(op="interrupt")
        events = agent.until_done(rid)
        assert done_of(events, rid)["exit_code"] == code
        assert error_of(events, rid)["etype"] == "KeyboardInterrupt"
    assert outputs(agent.exec("after", "print('ok')"), "after") == "ok\n"


def test_shutdown_kills_the_run_child(agent, tmp_path):
    (tmp_path / "slow.py").write_text(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(30)\n")
    agent.send(op="run", id="r", argv=[sys.executable, "slow.py"], env={})
    child = int(outputs(agent.until_output("r", "\n"), "r"))
    agent.send(op="shutdown")
    assert agent.wait_exit() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_kernel_killed_outright_takes_its_run_child_along(agent, tmp_path):
    """SIGKILL leaves the kernel no time to clean up: the child must not outlive it (it would hold
    the GPU). Linux: the child asked for SIGKILL on its parent's death."""
    (tmp_path / "slow.py").write_text(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(30)\n")
    agent.send(op="run", id="r", argv=[sys.executable, "slow.py"], env={})
    child = int(outputs(agent.until_output("r", "\n"), "r"))
    agent.proc.kill()
    agent.wait_exit()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as fh:
            if fh.read().split(") ")[-1][0] == "Z":
                break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the run child {child} outlived its killed kernel")


def test_purge_makes_an_edited_helper_module_reimport(agent, tmp_path):
    helper = tmp_path / "helper.py"
    helper.write_text("VALUE = 1\n")
    assert outputs(agent.exec("1", "import helper\nprint(helper.VALUE)"), "1") == "1\n"
    helper.write_text("VALUE = 2\n")  # same size, likely the same mtime second: the .pyc trap
    assert outputs(agent.exec("2", "import helper\nprint(helper.VALUE)"), "2") == "1\n"
    agent.send(op="purge", paths=["helper.py"])
    assert outputs(agent.exec("3", "import helper\nprint(helper.VALUE)"), "3") == "2\n"


def test_reset_gives_a_fresh_namespace(agent):
    agent.exec("1", "x = 1")
    agent.send(op="reset", id="reset")
    assert done_of(agent.until_done("reset"), "reset")["ok"] is True
    assert error_of(agent.exec("2", "x"), "2")["etype"] == "NameError"


def test_fifty_megabytes_of_output_arrive_intact(agent):
    agent.send(op="exec", id="big", filename="c.py", first_line=1, code=textwrap.dedent("""\
        import os, sys
        block = "x" * (1 << 20)
        for _ in range(25):
            sys.stdout.write(block)
        for _ in range(25):
            os.write(1, block.encode())
    """))
    total = 0
    while True:
        event = agent.next_event()
        assert event is not None
        if event["type"] == "out":
            assert event["id"] == "big" and len(event["data"]) <= 64 * 1024
            total += len(event["data"])
        elif event["type"] == "done":
            break
    assert total == 50 * (1 << 20)
    assert event["ok"] is True


def test_binary_output_is_replaced_and_split_characters_survive(agent):
    events = agent.exec("bin", """\
        import os, time
        os.write(1, b"bad \\xff\\xfe bytes\\n")
        e_acute = "\\u00e9".encode()
        os.write(1, e_acute[:1])
        time.sleep(0.05)
        os.write(1, e_acute[1:] + b"\\n")
    """)
    assert outputs(events, "bin") == "bad \ufffd\ufffd bytes\n\u00e9\n"


def test_a_bad_request_line_is_logged_and_ignored(agent):
    agent.send_raw(b"this is not json\n")
    agent.send(op="no-such-op")
    events = agent.exec("ok", "print('fine')")
    warnings = [e for e in events if e["type"] == "log" and e["level"] == "warning"]
    assert len(warnings) == 2
    assert outputs(events, "ok") == "fine\n"


def test_gpu_request_answers_with_a_gpu_event(agent):
    agent.send(op="gpu", interval=0.5)
    (event,) = agent.until(lambda e: e["type"] == "gpu")[-1:]
    assert isinstance(event["available"], bool)
    agent.send(op="gpu", interval=0)
    assert done_of(agent.exec("after", "pass"), "after")["ok"] is True


def test_end_of_requests_shuts_down_cleanly(agent):
    agent.proc.stdin.close()
    assert agent.wait_exit() == 0


def test_shutdown_does_not_wait_for_a_thread_a_cell_started(agent):
    agent.exec("t", """\
        import atexit, threading, time
        threading.Thread(target=time.sleep, args=(60,)).start()
        atexit.register(print, "atexit ran")
    """)
    agent.send(op="shutdown")
    assert agent.wait_exit() == 0
