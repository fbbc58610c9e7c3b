"""Bounded tracebacks (devloop/agent/tbformat.py): Python's own text for ordinary errors, and a
short, collapsed one for a 300,000-frame RecursionError, a huge message or a long chain."""

import ast
import json
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

from devloop.agent import tbformat

ROOT = Path(__file__).resolve().parents[2]


def raised(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


def python_text(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def ratio(a, b):
    return a / b


def chained():
    try:
        {}["key"]
    except KeyError as exc:
        raise ValueError("bad value") from exc


def during_handling():
    try:
        ratio(1, 0)
    except ZeroDivisionError:
        [][1]


def recursion():
    def down(n):
        return down(n + 1)
    down(0)


@pytest.mark.parametrize("fn", [lambda: ratio(1, 0), chained, during_handling, recursion,
                                lambda: compile("x = (\n", "model.py", "exec")],
                         ids=["simple", "cause", "context", "recursion", "syntax"])
def test_ordinary_errors_read_exactly_as_python_prints_them(fn):
    exc = raised(fn)
    assert tbformat.format_exception(exc) == python_text(exc)


def test_frames_are_the_users_frames_outermost_first():
    exc = raised(lambda: ratio(1, 0))
    frames = tbformat.user_frames(exc)
    assert [f["name"] for f in frames] == ["raised", "<lambda>", "ratio"]
    assert frames[-1] == {"file": __file__, "line": ratio.__code__.co_firstlineno + 1, "name": "ratio"}


def test_skipped_files_are_left_out_and_the_chain_is_not_modified():
    wrapper = compile("def run(fn):\n    return fn()\n", "/agent/kernel.py", "exec")
    namespace = {}
    exec(wrapper, namespace)
    exc = raised(lambda: namespace["run"](lambda: ratio(1, 0)))
    before = python_text(exc)
    frames, text = tbformat.describe(exc, skip=lambda name: name.startswith("/agent/"))
    assert "/agent/kernel.py" in before
    assert "/agent/kernel.py" not in text and all(f["file"] != "/agent/kernel.py" for f in frames)
    assert 'in ratio\n    return a / b' in text
    assert python_text(exc) == before


DEEP = textwrap.dedent("""\
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from devloop.agent import tbformat
    sys.setrecursionlimit(300000)

    def down(n):
        return down(n + 1)

    def ping(n):
        return pong(n + 1)

    def pong(n):
        return ping(n + 1)

    out = {}
    for fn in (down, ping):
        try:
            fn(0)
        except RecursionError as exc:
            frames, text = tbformat.describe(exc)
            out[fn.__name__] = {"frames": frames, "text": text}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A 300,000-frame RecursionError, in a fresh interpreter (a deep stack of its own)."""
    script = tmp_path_factory.mktemp("deep") / "deep.py"
    script.write_text(DEEP)
    done = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def test_runaway_recursion_collapses_to_a_few_lines(deep):
    text, frames = deep["down"]["text"], deep["down"]["frames"]
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1].startswith("RecursionError: maximum recursion depth exceeded")
    repeated = [line for line in lines if "[Previous line repeated" in line]
    assert len(repeated) == 1
    count = int(repeated[0].split("repeated ")[1].split()[0])
    assert count > 200_000  # every frame is counted, none shown twice more than Python does
    assert len(lines) < 20
    assert [f["name"] for f in frames] == ["<module>", "down", "down", "down"]


def test_mutual_recursion_keeps_both_ends_and_names_what_it_left_out(deep):
    text, frames = deep["ping"]["text"], deep["ping"]["frames"]
    assert len(text) <= tbformat.MAX_TEXT
    assert len(frames) <= 2 * tbformat.EDGE_FRAMES
    omitted = [line for line in text.splitlines() if "frames omitted" in line]
    assert len(omitted) == 1 and int(omitted[0].split("[... ")[1].split()[0]) > 200_000
    assert frames[0]["name"] == "<module>"
    assert {f["name"] for f in frames[-2:]} == {"ping", "pong"}
    assert text.rstrip().endswith("RecursionError: maximum recursion depth exceeded")


def test_a_huge_message_is_clipped_in_the_text_and_the_message():
    exc = raised(lambda: (_ for _ in ()).throw(ValueError("y" * 10_000_000)))
    text = tbformat.format_exception(exc)
    assert len(text) <= tbformat.MAX_TEXT + 100
    assert "characters omitted" in text and text.startswith("Traceback")
    msg = tbformat.message(exc)
    assert len(msg) <= tbformat.MAX_MESSAGE + 100 and msg.startswith("yyy") and msg.endswith("yyy")


def test_a_long_chain_of_exceptions_keeps_the_newest():
    def nest(n):
        try:
            if n == 0:
                raise KeyError("first")
            nest(n - 1)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError("level %d" % n) from exc

    exc = raised(lambda: nest(500))
    text = tbformat.format_exception(exc)
    assert "earlier chained exceptions omitted" in text
    assert text.rstrip().endswith("RuntimeError: level 500")
    assert text.count("The above exception was the direct cause") == tbformat.MAX_CHAIN - 1


def test_an_unprintable_exception_still_reports():
    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    exc = raised(lambda: (_ for _ in ()).throw(Broken()))
    assert tbformat.message(exc) == "<unprintable Broken>"
    assert "Broken" in tbformat.format_exception(exc)


def test_the_module_is_python_3_8_syntax_and_stdlib_only():
    source = (ROOT / "devloop" / "agent" / "tbformat.py").read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names)


SUGGEST = textwrap.dedent("""\
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from devloop.agent import tbformat
    X_test = 1
    class A:
        value = 1
    out = []
    for code in ["X_tes", "A().valu", "import os; os.pathh"]:
        try:
            exec(code, globals())
        except Exception as exc:
            out.append([tbformat.suggestion(exc), tbformat.format_exception(exc).splitlines()[-1]])
    print(json.dumps(out))
    """)


@pytest.mark.parametrize("python", __import__("tests.agent_pythons", fromlist=["x"]).agent_pythons())
def test_did_you_mean_is_kept_where_the_python_gives_it(python):
    res = subprocess.run([python, "-c", SUGGEST, str(Path(__file__).resolve().parents[2])],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] >= (3, 10))"],
                             capture_output=True, text=True).stdout.strip()
    if version == "True":
        assert [g[0] for g in got] == [". Did you mean: 'X_test'?", ". Did you mean: 'value'?",
                                       ". Did you mean: 'path'?"]
        assert got[0][1] == "NameError: name 'X_tes' is not defined. Did you mean: 'X_test'?"
    else:  # 3.8 / 3.9 print no suggestion: nor does the agent
        assert [g[0] for g in got] == ["", "", ""]
