"""The agent's display.py pieces that need no kernel: which cells show a value, PNG / SVG sizes,
capped reprs."""

from __future__ import annotations

import pytest

from devloop.agent import display


def value_of(source: str):
    body, last = display.compile_cell(source, "nb.py")
    namespace: dict = {}
    exec(body, namespace)
    return None if last is None else eval(last, namespace)


@pytest.mark.parametrize("source,shown", [
    ("x = 1\nx + 1\n", 2),
    ("x = 1\nx + 1;\n", None),
    ("x = 1\nx + 1 ;  # hidden\n", None),
    ("1; 2\n", 2),                       # as Jupyter: the last expression of the line
    ("(1 +\n 2)\n", 3),
    ("(1 +\n 2);\n", None),
    ("'a;'\n", "a;"),                    # a ; inside the value is not a trailing ;
    ("x = 5\n", None),
    ("if True:\n    7\n", None),          # the last statement is not an expression
    ("# only a comment\n", None),
    ("", None),
    ("é = 'ü'\né  # non-ASCII before the end offset (a byte offset)\n", "ü"),
])
def test_which_cells_show_a_value(source: str, shown) -> None:
    body, last = display.compile_cell(source, "nb.py")
    assert (last is None) == (shown is None)
    assert value_of(source) == shown


def test_a_syntax_error_keeps_the_users_line() -> None:
    with pytest.raises(SyntaxError) as info:
        display.compile_cell("\n\nx = (\n", "nb.py")
    assert info.value.filename == "nb.py" and info.value.lineno == 3


def test_sizes_and_caps() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (640).to_bytes(4, "big") + (480).to_bytes(4, "big")
    assert display.png_size(png) == (640, 480) and display.png_size(b"GIF89a") == (0, 0)
    assert display.svg_size(b'<svg xmlns="x" width="40px" height="20.5">') == (40, 20)
    assert display.svg_size(b'<svg viewBox="0 0 1 1">') == (0, 0)
    text = display.value_text("a" * 20000)
    assert len(text) < display.MAX_TEXT + 40 and text.endswith("(10002 more characters)")

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert display.value_text(Broken()) == "<repr failed: RuntimeError: no>"


def test_display_outside_a_kernel_prints(capsys) -> None:
    display.display({"a": 1}, 2)
    assert capsys.readouterr().out == "{'a': 1} 2\n"
