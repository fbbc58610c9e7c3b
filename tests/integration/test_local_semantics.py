"""Notebook-faithful semantics end to end on `local` (issues 20.1-20.5, 18.5, 18.6): the real
CLI, the real agent. Each test uses the example its issue gives."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.clitools import Watch, devloop, events, last, outputs


def write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text).lstrip("\n"))


def starts(evs: list[dict]) -> list[int]:
    return [e["cell"] for e in evs if e["event"] == "cell_start"]


def logs(evs: list[dict]) -> list[str]:
    return [e["message"] for e in evs if e["event"] == "log"]


# ------------------------------------------------------------- 20.1: stale names fail as fresh


@pytest.mark.parametrize("policy", ["linear", "reactive"])
def test_a_renamed_variable_fails_as_a_fresh_run_would(tmp_path: Path, policy: str) -> None:
    (tmp_path / "devloop.toml").write_text(f'[run]\nrerun = "{policy}"\n')
    nb = tmp_path / "nb.py"
    write(nb, '''
        # %% load
        X_train = [1, 2, 3]

        # %% fit
        print("sum", sum(X_train))
    ''')
    w = Watch(tmp_path, "nb.py")
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        assert last(first, "run_done")["ok"] is True
        time.sleep(0.3)
        nb.write_text(nb.read_text().replace("X_train = [1, 2, 3]", "X_tr = [1, 2, 3]"))
        second = w.until(lambda e: e["event"] == "run_done")
        assert "removed X_train: cell 0 no longer defines it" in logs(second)
        assert starts(second) == [0, 1]
        err = [e for e in second if e["event"] == "error"][0]
        assert (err["cell"], err["type"], err["line"]) == (1, "NameError", 5)
        assert last(second, "run_done")["ok"] is False
    finally:
        w.stop()
    fresh = subprocess.run([sys.executable, str(nb)], capture_output=True, text=True)
    assert fresh.returncode == 1 and "NameError" in fresh.stderr  # what devloop now matches


# ----------------------------------------------------- 20.2: reactive sees in-place changes


def test_reactive_reruns_the_cells_that_read_a_name_a_method_call_changed(tmp_path: Path) -> None:
    (tmp_path / "devloop.toml").write_text('[run]\nrerun = "reactive"\n')
    nb = tmp_path / "nb.py"
    write(nb, '''
        # %% model
        class Model:
            def fit(self, X, y):
                self.n_features_in_ = len(X[0])
                return self
        model = Model()

        # %% fit
        model.fit([[1, 2]], [0])

        # %% show
        print("features", model.n_features_in_)

        # %% unrelated
        print("other")
    ''')
    w = Watch(tmp_path, "nb.py")
    try:
        w.until(lambda e: e["event"] == "run_done")
        time.sleep(0.3)
        nb.write_text(nb.read_text().replace("model.fit([[1, 2]], [0])", "model.fit([[1, 2, 3]], [0])"))
        second = w.until(lambda e: e["event"] == "run_done")
        assert starts(second) == [1, 2]
        assert outputs(second) == "features 3\n"
    finally:
        w.stop()


# --------------------------------------------------------------- 20.3: IPython magics


MAGICS = '''
    # %% setup
    %matplotlib inline
    %load_ext autoreload
    %autoreload 2
    import os
    !echo shell says hi
    files = !echo a; echo b
    print("captured", files)
    %env DEVLOOP_MAGIC=yes
    print("env", os.environ["DEVLOOP_MAGIC"])

    # %% timed
    %%time
    total = sum(range(1000))
    print("total", total)

    # %% line time
    %time doubled = total * 2
    print("doubled", doubled)
    %timeit -n 3 -r 2 sum(range(10))
'''


def _bare_python(tmp_path: Path) -> str:
    """An interpreter without IPython (nor anything else): a venv without packages."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import IPython"], capture_output=True)
    assert probe.returncode != 0, "the bare venv sees IPython"
    return python


@pytest.mark.parametrize("ipython", [True, False], ids=["with-ipython", "stdlib-only"])
def test_ipython_magics_run(tmp_path: Path, ipython: bool) -> None:
    project = tmp_path / "p"
    project.mkdir()
    write(project / "nb.py", MAGICS)
    if ipython:
        pytest.importorskip("IPython")
        python = sys.executable
    else:
        python = _bare_python(tmp_path)
    (project / "devloop.toml").write_text(f'[run]\npython = "{python}"\n')
    res = devloop("run", "nb.py", "--json", "-v", cwd=project)
    evs = events(res.stdout)
    assert res.returncode == 0, (res.stdout, res.stderr)
    has_ipython = subprocess.run([python, "-c", "import IPython"], capture_output=True).returncode == 0
    assert has_ipython is ipython  # the kernel's interpreter: IPython's transformer, or devloop's
    text = outputs(evs)
    assert "shell says hi\n" in text
    assert "captured ['a', 'b']\n" in text
    assert "env: DEVLOOP_MAGIC=yes\nenv yes\n" in text
    assert "total 499500\n" in outputs(evs, 1) and "Wall time: " in outputs(evs, 1)
    assert "doubled 999000\n" in outputs(evs, 2)
    assert "per loop (mean ± std. dev. of 2 runs, 3 loops each)" in outputs(evs, 2)
    assert any("%matplotlib inline: noted" in m for m in logs(evs))


@pytest.mark.parametrize("ipython", [True, False], ids=["with-ipython", "stdlib-only"])
def test_an_unsupported_magic_is_named_before_anything_runs(tmp_path: Path, ipython: bool) -> None:
    project = tmp_path / "p"
    project.mkdir()
    write(project / "nb.py", '''
        # %%
        print("first cell ran")

        # %%
        x = 1
        %debug
    ''')
    python = sys.executable if ipython else _bare_python(tmp_path)
    (project / "devloop.toml").write_text(f'[run]\npython = "{python}"\n')
    res = devloop("run", "nb.py", "--json", cwd=project)
    assert res.returncode == 1
    evs = events(res.stdout)
    err = [e for e in evs if e["event"] == "error"][0]
    assert (err["cell"], err["type"], err["file"], err["line"]) == (1, "UnsupportedMagic", "nb.py", 6)
    assert "%debug is not supported" in err["message"]
    assert "first cell ran" not in outputs(evs)


# ------------------------------------------------- 20.4: other languages skipped, clean titles


def test_cells_in_other_languages_are_skipped_and_said_so(tmp_path: Path) -> None:
    write(tmp_path / "nb.py", '''
        # %% Pandas plot {"tags": ["parameters"]}
        n = 3

        # %% language="R"
        # library(ggplot2)
        # print("R ran")

        # %%
        %%html
        <b>html ran</b>

        # %% Sum
        print("sum", n + 1)
    ''')
    res = devloop("run", "nb.py", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    evs = events(res.stdout)
    assert [(e["cell"], e["title"]) for e in evs if e["event"] == "cell_start"] == [
        (0, "Pandas plot"), (1, "Sum")]
    assert outputs(evs) == "sum 4\n"
    assert logs(evs) == ["skipped the R cell at line 4: devloop runs Python cells only",
                         "skipped the html cell at line 8: devloop runs Python cells only"]


# --------------------------------------------------------------- 20.5: other cell markers


def test_nbconvert_markers_give_partial_reruns(tmp_path: Path) -> None:
    nb = tmp_path / "export.py"
    write(nb, '''
        #!/usr/bin/env python
        # coding: utf-8

        # In[1]:


        data = [1, 2, 3]
        print("loaded")


        # In[ ]:


        print("total", sum(data))

        # <codecell>
        print("last")
    ''')
    w = Watch(tmp_path, "export.py")
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        assert starts(first) == [0, 1, 2]
        time.sleep(0.3)
        nb.write_text(nb.read_text().replace('print("total", sum(data))', 'print("sum", sum(data))'))
        second = w.until(lambda e: e["event"] == "run_done")
        assert starts(second) == [1, 2]
        assert outputs(second) == "sum 6\nlast\n"
    finally:
        w.stop()


# ------------------------------------------------------ 18.5: comment-only edits rerun nothing


def test_a_comment_or_whitespace_edit_reruns_nothing(tmp_path: Path) -> None:
    nb = tmp_path / "nb.py"
    write(nb, '''
        # %% load
        # load the data (slow)
        data = [1, 2, 3]

        # %% total
        print("total", sum(data))
    ''')
    w = Watch(tmp_path, "nb.py")
    try:
        w.until(lambda e: e["event"] == "run_done")
        time.sleep(0.3)
        nb.write_text(nb.read_text().replace("(slow)", "(3 s, cached)").replace(
            "data = [1, 2, 3]", "data = [1, 2, 3]  # three\n"))
        assert w.quiet_for(2.0) == []
        nb.write_text(nb.read_text().replace("[1, 2, 3]", "[1, 2, 4]"))
        third = w.until(lambda e: e["event"] == "run_done")
        assert starts(third) == [0, 1] and outputs(third) == "total 7\n"
    finally:
        w.stop()


# ------------------------------------------------------ 18.6: syntax errors before running


def test_a_syntax_error_fails_the_pass_before_any_cell_runs(tmp_path: Path) -> None:
    nb = tmp_path / "nb.py"
    write(nb, '''
        # %% load
        print("loading")
        data = [1, 2, 3]

        # %% double
        doubled = [x * 2 for x in data]

        # %% total
        print("total", sum(doubled))
    ''')
    res = devloop("run", "nb.py", "--json", cwd=tmp_path)
    assert res.returncode == 0
    w = Watch(tmp_path, "nb.py")
    try:
        w.until(lambda e: e["event"] == "run_done")
        time.sleep(0.3)
        # an edit to cell 0 (it would rerun first) and a typo in cell 1
        nb.write_text(nb.read_text().replace('print("loading")', 'print("loading again")')
                      .replace("for x in data]", "for x in data"))
        second = w.until(lambda e: e["event"] == "run_done")
        assert starts(second) == []  # nothing ran: not even cell 0
        err = [e for e in second if e["event"] == "error"][0]
        assert (err["cell"], err["type"], err["file"], err["line"]) == (1, "SyntaxError", "nb.py", 6)
        assert last(second, "run_done")["ok"] is False and last(second, "run_done")["cells_run"] == 0
        nb.write_text(nb.read_text().replace("for x in data", "for x in data]"))
        third = w.until(lambda e: e["event"] == "run_done")
        assert starts(third) == [0, 1, 2]
        assert outputs(third) == "loading again\ntotal 12\n"
    finally:
        w.stop()
