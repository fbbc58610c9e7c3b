"""Driving the real `devloop` CLI from tests: one-shot runs, JSON events, a live `watch` process.

Shared by the end-to-end tests of every target, so that "the same events as on local" is
judged by one definition (`observable`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

DEVLOOP = [sys.executable, "-m", "devloop.cli"]

CELLS = textwrap.dedent("""\
    # %% load
    data = [1, 2, 3]
    print("loaded", len(data))

    # %% double
    doubled = [x * 2 for x in data]
    print("doubled", doubled)

    # %% total
    print("total", sum(doubled))
    """)

# Three cells whose output also comes from a raw fd write and stderr: what a remote must relay.
RELAYED_CELLS = textwrap.dedent("""\
    # %% load
    import os, sys
    data = [1, 2, 3]
    print("loaded", len(data))
    os.write(1, b"raw fd write\\n")
    print("to stderr", file=sys.stderr)

    # %% double
    doubled = [x * 2 for x in data]
    print("doubled", doubled)

    # %% total
    print("total", sum(doubled))
    """)


def devloop(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`devloop ARGS` in `cwd`, outside GitHub Actions annotations unless `env` asks for them."""
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    full_env.update(env or {})
    return subprocess.run(DEVLOOP + list(args), cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def last(evs: list[dict], name: str) -> dict:
    return [e for e in evs if e["event"] == name][-1]


def outputs(evs: list[dict], cell: int | None = None) -> str:
    return "".join(e["text"] for e in evs if e["event"] == "output" and (cell is None or e["cell"] == cell))


def observable(evs: list[dict]) -> list[tuple]:
    """What the user sees, independent of timing and of where it ran."""
    out: list[tuple] = []
    text: dict[tuple, str] = {}
    for e in evs:
        kind = e["event"]
        if kind == "cell_start":
            out.append(("start", e["cell"], e["line"], e["title"]))
        elif kind == "output":
            text[(e["cell"], e["stream"])] = text.get((e["cell"], e["stream"]), "") + e["text"]
        elif kind == "error":
            out.append(("error", e["cell"], e["type"], e["file"], e["line"], e["message"]))
        elif kind == "cell_done":
            out.append(("done", e["cell"], e["ok"]))
        elif kind == "run_done":
            out.append(("run_done", e["ok"], e["exit_code"], e["cells_run"]))
    out.append(("text", sorted(text.items())))
    return out


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


class Watch:
    """A `devloop watch --json` process (or another `command`), its events read line by line."""

    def __init__(self, cwd: Path, *args: str, timeout: float = 30, command: str = "watch",
                 env: dict | None = None) -> None:
        self.proc = subprocess.Popen(DEVLOOP + [command, *args, "--json"], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0, env=os.environ | dict(env or {}))
        self.timeout = timeout
        self.seen: list[dict] = []
        self._buf = b""

    def until(self, pred, timeout: float | None = None) -> list[dict]:
        """Read events until pred(event) is true; returns the events read in this call."""
        got: list[dict] = []
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if not line.startswith(b"{"):
                    continue
                e = json.loads(line)
                got.append(e)
                self.seen.append(e)
                if pred(e):
                    return got
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._buf += chunk
        raise AssertionError(f"timed out; got {got!r}")

    def quiet_for(self, seconds: float) -> list[dict]:
        """The cell starts / run ends seen within `seconds` (none, when a save changed nothing)."""
        try:
            return self.until(lambda e: e["event"] in ("cell_start", "run_done"), timeout=seconds)
        except AssertionError:
            return []

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the watcher and wait for its exit code (killed if it does not exit in time)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
