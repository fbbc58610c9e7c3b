"""The whole loop with the agent on Python 3.8, the oldest a target may have: the remote's
manifest, the sync receiver, the kernel and a script run, through the real CLI on a `local`
profile whose `python:` is a 3.8 interpreter and whose `workdir:` makes it sync like a remote."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent_pythons import oldest_python
from tests.clitools import CELLS, devloop, events, last, observable

OLD = oldest_python()
pytestmark = pytest.mark.skipif(OLD is None, reason="NO PYTHON 3.8 on this machine: the agent was NOT tested "
                                                    "on the oldest Python it supports")


def test_run_with_the_agent_on_python_3_8_matches_this_python(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "profiles").mkdir(parents=True)
    (project / "nb.py").write_text(CELLS)
    (project / "helper.py").write_text("VALUE = 1\n")
    (project / "profiles" / "old.yaml").write_text(f"kind: local\npython: {OLD}\nworkdir: {tmp_path / 'remote'}\n")
    now = devloop("run", "nb.py", "--json", cwd=project)
    old = devloop("run", "nb.py", "--profile", "old", "--json", cwd=project)
    assert now.returncode == 0 and old.returncode == 0, old.stderr
    evs = events(old.stdout)
    assert last(evs, "ready")["python"].startswith("3.8.")
    assert observable(evs) == observable(events(now.stdout))
    assert (tmp_path / "remote" / "helper.py").read_text() == "VALUE = 1\n"
    again = devloop("run", "nb.py", "--profile", "old", "--json", cwd=project)  # manifest mode on 3.8
    assert again.returncode == 0
    assert not [e for e in events(again.stdout) if e["event"] == "sync"]  # nothing to resend


def test_a_script_runs_and_its_exit_code_is_kept_on_python_3_8(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "old.yaml").write_text(f"kind: local\npython: {OLD}\n")
    (tmp_path / "script.py").write_text("import sys\nprint(sys.version_info[:2])\nsys.exit(4)\n")
    res = devloop("run", "script.py", "--profile", "old", "--json", cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    assert "(3, 8)" in "".join(e["text"] for e in events(res.stdout) if e["event"] == "output")
