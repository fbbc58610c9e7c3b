"""Hints a new user meets (issue 18): they name what the user can run -- a file they probably
meant, the flag they typed, a command that works as printed -- never devloop's own repository
files. Through the real CLI entry point."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from devloop.cli import main
from devloop.core.config import load_config
from devloop.core.project_template import obvious_entry

REPO = Path(__file__).resolve().parents[2]
CELLS = "# %% load\nx = 1\n\n# %% train\nprint(x + 1)\n"


def test_a_misspelt_file_suggests_the_file_meant(tmp_path, capsys, monkeypatch):
    (tmp_path / "train.py").write_text(CELLS)
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "trian.py"]) == 2
    err = capsys.readouterr().err
    assert "trian.py: no such file" in err and "did you mean train.py? (devloop run train.py)" in err


def test_an_unknown_profile_from_the_command_line_names_the_flag(tmp_path, capsys, monkeypatch):
    (tmp_path / "train.py").write_text(CELLS)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-p", "nope", "train.py"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'nope' (from -p/--profile)" in err
    assert "devloop.toml" not in err.split("--")[0]  # the flag is where it came from, not a file


def test_no_hint_points_into_devloop_s_own_repository():
    """A user has no tests/infra/ (nor any of devloop's own files): no message in the package
    (a string that is not a docstring) names them."""
    import ast

    offenders = []
    for path in (REPO / "devloop").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if re.search(r"tests/(infra|unit|integration)/|scripts/[\w-]+\.sh", node.value):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:80]}")
    assert offenders == []


def test_init_sets_entry_when_the_project_has_one_python_file_and_its_hint_works(tmp_path, capsys,
                                                                                  monkeypatch):
    (tmp_path / "train.py").write_text(CELLS)
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert load_config(tmp_path).project.entry == "train.py"
    commands = re.findall(r"`([^`]+)`", out.splitlines()[-1])
    assert commands[0] == "devloop up"
    # the printed command, with `run` for `up` (same file resolution, no screen needed), runs
    argv = shlex.split(commands[0])[1:]
    assert main(["run", *argv[1:]]) == 0
    assert "run ok: 2 cells" in capsys.readouterr().out


def test_init_names_the_file_in_its_hint_when_none_is_obvious(tmp_path, capsys, monkeypatch):
    for name in ("train.py", "evaluate.py"):
        (tmp_path / name).write_text("print('hi')\n")
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert load_config(tmp_path).project.entry in (None, "")
    assert "evaluate.py, train.py: pick one" in out and "devloop up YOUR_FILE.py" in out


def test_obvious_entry_ignores_tests_and_packaging(tmp_path):
    for name in ("setup.py", "test_model.py", "_private.py", "conftest.py"):
        (tmp_path / name).write_text("")
    assert obvious_entry(tmp_path) is None
    (tmp_path / "train.py").write_text("")
    assert obvious_entry(tmp_path) == "train.py"
    (tmp_path / "eval.py").write_text("")
    assert obvious_entry(tmp_path) is None
    (tmp_path / "train.py").write_text(CELLS)  # the one with cells
    assert obvious_entry(tmp_path) == "train.py"


def test_no_file_to_run_names_the_command_and_the_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "train.py").write_text(CELLS)
    (tmp_path / "devloop.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "(devloop run train.py)" in err and 'entry = "train.py"' in err


def test_the_readme_and_init_agree_on_shm_size():
    from devloop.core.project_template import PROFILES

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    values = set(re.findall(r"shm_size: (\S+)", readme))
    template = set(re.findall(r"shm_size: (\S+)", PROFILES["docker-gpu.yaml"]))
    assert values and values <= template | {"8Gi"} and template == {"8Gi"}


@pytest.mark.parametrize("count,noun,text", [(1, "cell", "1 cell"), (2, "cell", "2 cells"),
                                             (0, "file", "0 files"), (1, "file", "1 file")])
def test_counted_nouns(count, noun, text):
    from devloop.core.units import plural

    assert plural(count, noun) == text


def test_one_size_unit_in_headless_and_the_app():
    import io

    from devloop.core import events as ev
    from devloop.headless import Reporter
    from devloop.core.units import human_bytes
    from devloop.ui.widgets import syncline

    out = io.StringIO()
    Reporter(out=out, err=out, github=False)(ev.SyncDone(files=1, bytes=7_800, deleted=0, ms=3.0))
    assert "1 file, 7.6 KiB" in out.getvalue()
    assert syncline.human_bytes is human_bytes and syncline.plural(1, "file") == "1 file"
