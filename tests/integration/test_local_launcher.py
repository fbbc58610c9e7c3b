"""Issue 16 item 9 on `local`: `[run] launcher = "torchrun"` through the real CLI and agent,
with a stand-in launcher (tests/fakes/fake-torchrun, put on PATH as `torchrun`: no torch here)
that runs one process per rank and prefixes lines as torchrun's --tee does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.clitools import devloop, events

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "fake-torchrun"

SCRIPT = """import os, sys
rank = int(os.environ["RANK"])
print(f"hello from {rank} of {os.environ['WORLD_SIZE']}")
if rank == int(os.environ.get("FAIL_RANK", "-1")):
    sys.exit(3)
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE, bin_dir / "torchrun")
    (bin_dir / "torchrun").chmod(0o755)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "devloop.toml").write_text('[project]\nname = "ddp"\n\n[run]\nlauncher = "torchrun"\n'
                                       'nproc_per_node = 2\n')
    (root / "train.py").write_text(SCRIPT)
    return root, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_each_line_is_tagged_with_its_rank(project) -> None:
    root, env = project
    res = devloop("run", "train.py", cwd=root, env=env)
    assert res.returncode == 0, res.stderr
    assert "[r0] hello from 0 of 2" in res.stdout and "[r1] hello from 1 of 2" in res.stdout
    outs = "".join(e["text"] for e in events(devloop("run", "train.py", "--json", cwd=root,
                                                      env=env).stdout) if e["event"] == "output")
    assert "[r1] hello from 1 of 2\n" in outs and "[default" not in outs


def test_the_failing_rank_is_named(project) -> None:
    root, env = project
    res = devloop("run", "train.py", cwd=root, env={**env, "FAIL_RANK": "1"})
    assert res.returncode == 1
    assert "rank 1 failed with exit code 3" in res.stderr
    assert "[r0] hello from 0 of 2" in res.stdout


def test_a_percent_file_under_a_launcher_is_refused(project) -> None:
    root, env = project
    (root / "nb.py").write_text("# %%\nprint('cell')\n")
    res = devloop("run", "nb.py", cwd=root, env=env)
    assert res.returncode == 2
    assert "DDP needs processes, not a kernel" in res.stderr and "remove launcher" in res.stderr
    assert "cell" not in res.stdout.splitlines()  # the cell never ran
