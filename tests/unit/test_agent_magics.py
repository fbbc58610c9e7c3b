"""The agent's IPython magics (issue 20.3): devloop's stdlib transformer and IPython's give cells
that run the same; line numbers are kept; a `%` or `!` that is Python stays Python."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from devloop.agent import magics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["stdlib", "ipython"])
def transformer(request, monkeypatch):
    """Which transformer compile_cell uses: IPython's (when installed) or devloop's own."""
    if request.param == "ipython":
        pytest.importorskip("IPython")
        monkeypatch.setattr(magics, "_IPYTHON", [])
    else:
        monkeypatch.setattr(magics, "_IPYTHON", [None])
    return request.param


def run(code: str, ns: dict | None = None, first_line: int = 1) -> tuple[dict, str]:
    ns = {"__name__": "__main__"} if ns is None else ns
    m = magics.Magics(ns)
    out = io.StringIO()
    with redirect_stdout(out):
        exec(magics.compile_cell(textwrap.dedent(code), "nb.py", first_line, m), ns)
    return ns, out.getvalue()


def test_plain_python_is_not_transformed(transformer):
    ns, _ = run("x = 10 % 3\ny = (7\n     % 4)\ns = '''\n%d items\n!not a shell\n'''\n")
    assert (ns["x"], ns["y"], ns["s"]) == (1, 3, "\n%d items\n!not a shell\n")
    assert magics.HELPER not in ns


def test_a_percent_or_bang_inside_python_stays_python_next_to_a_magic(transformer):
    ns, _ = run('''
        %env DEVLOOP_T=1
        y = (7
             % 4)
        s = """
        %d items
        !not a shell
        """
        ok = 1 != 2
    ''')
    assert ns["y"] == 3 and ns["s"] == "\n%d items\n!not a shell\n" and ns["ok"] is True


def test_time_and_shell_magics(transformer, capfd):
    ns, out = run('''
        %time x = sum(range(10))
        files = !printf 'a\\nb\\n'
    ''')
    assert ns["x"] == 45 and ns["files"] == ["a", "b"]
    assert "Wall time: " in out


def test_line_numbers_are_the_users(transformer):
    with pytest.raises(ZeroDivisionError) as info:
        run("%matplotlib inline\nx = 1\ny = x / 0\n", first_line=20)
    frames = [f for f in __import__("traceback").extract_tb(info.value.__traceback__) if f.filename == "nb.py"]
    assert frames[-1].lineno == 22


def test_cell_magic_body_keeps_its_lines(transformer):
    with pytest.raises(NameError) as info:
        run("%%time\na = 1\nb = missing\n", first_line=5)
    frames = [f for f in __import__("traceback").extract_tb(info.value.__traceback__) if f.filename == "nb.py"]
    assert frames[-1].lineno == 7


@pytest.mark.parametrize("code,line,needle", [
    ("x = 1\n%debug\n", 11, "%debug is not supported"),
    ("%%capture\nx = 1\n", 10, "%%capture is not supported"),
    ("x = 1\n%%time\n", 11, "must be the cell's first line"),
    ("%load_ext tensorboard\n", 10, "%load_ext tensorboard is not supported"),
])
def test_unsupported_magics_are_named_at_their_line(transformer, code, line, needle):
    try:
        run(code, first_line=10)
    except SyntaxError as exc:  # UnsupportedMagic is one: reported before the pass runs
        assert needle in str(exc.msg) and exc.lineno == line and exc.filename == "nb.py"
    else:
        pytest.fail("no error")


def test_the_agent_imports_ipython_only_if_present(tmp_path):
    """In an interpreter without IPython (a bare venv), magics still run, the stdlib way."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from devloop.agent import magics\n"
        "ns = {}\n"
        "exec(magics.compile_cell('!echo from-shell\\n%%time x = 2\\n', 'nb.py', 1, magics.Magics(ns)), ns)\n"
        "print('x', ns['x'], 'IPython' in sys.modules)\n" % str(ROOT))
    res = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "from-shell\n" in res.stdout and res.stdout.rstrip().endswith("x 2 False")


def test_env_cd_and_pip(transformer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEVLOOP_MAGIC_T", "before")  # restored after the test
    (tmp_path / "sub").mkdir()
    ns, out = run('''
        %env DEVLOOP_MAGIC_T=on
        value = %env DEVLOOP_MAGIC_T
        %cd sub
        import os
        here = os.getcwd()
        %pip --version
    ''')
    assert ns["value"] == "on" and __import__("os").environ["DEVLOOP_MAGIC_T"] == "on"
    assert ns["here"] == str(tmp_path / "sub")
    assert "env: DEVLOOP_MAGIC_T=on\n" in out and "restart the kernel" in out
