"""Percent-format parsing, cell hashes, name analysis and rerun planning (all pure)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devloop.core.cells import (
    Cell,
    cell_hash,
    defined_names,
    parse_cells,
    plan_reruns,
    used_names,
)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# ------------------------------------------------------------------------------ parsing


def test_jupytext_example():
    parsed = parse_cells(src('''
        # %% [markdown]
        # This is a markdown cell

        # %%
        def f(x):
            return 3 * x

        # %% Use f tags=["parameters"]
        y = f(2)
        print(y)
    '''))
    assert not parsed.is_script
    assert [c.kind for c in parsed.all_cells] == ["markdown", "code", "code"]
    first, second = parsed.cells
    assert (first.index, first.title, first.marker_line, first.code_line) == (0, "", 4, 5)
    assert first.code == "def f(x):\n    return 3 * x\n"
    assert (second.index, second.title, second.marker_line, second.code_line) == (1, "Use f", 8, 9)
    assert second.metadata == {"tags": ["parameters"]}
    assert second.code == "y = f(2)\nprint(y)\n"


def test_vscode_style_markers_without_space():
    parsed = parse_cells("#%%\na = 1\n#%% second\nb = 2\n")
    assert [(c.title, c.marker_line, c.code) for c in parsed.cells] == [
        ("", 1, "a = 1\n"), ("second", 3, "b = 2\n")]


def test_titles_and_metadata():
    parsed = parse_cells('# %% Load the data  key="value" n=3 active="ipynb"\nx = 1\n')
    cell = parsed.cells[0]
    assert cell.title == "Load the data"
    assert cell.metadata == {"key": "value", "n": 3, "active": "ipynb"}


def test_markdown_cells_are_not_code_cells():
    parsed = parse_cells(src('''
        # %%
        a = 1
        # %% [md] Notes
        # some text
        # %% [markdown]
        """a docstring-like note"""
        # %%
        b = 2
    '''))
    assert [c.code for c in parsed.cells] == ["a = 1\n", "b = 2\n"]
    assert [c.index for c in parsed.cells] == [0, 1]
    markdown = [c for c in parsed.all_cells if c.kind == "markdown"]
    assert [c.title for c in markdown] == ["Notes", ""] and all(c.index == -1 for c in markdown)


def test_raw_cells_are_not_code_cells():
    parsed = parse_cells("# %% [raw]\nnot python at all\n# %%\nx = 1\n")
    assert [c.kind for c in parsed.all_cells] == ["raw", "code"]
    assert len(parsed.cells) == 1


def test_marker_inside_triple_quoted_string_is_not_a_boundary():
    parsed = parse_cells(src('''
        # %%
        doc = """
        # %% this is text
        """
        x = 1
        # %%
        y = 2
    '''))
    assert len(parsed.cells) == 2
    assert parsed.cells[0].code == 'doc = """\n# %% this is text\n"""\nx = 1\n'
    assert parsed.cells[1].marker_line == 6


def test_marker_inside_single_quoted_triple_string_and_fstring():
    parsed = parse_cells("# %%\na = f'''\n# %% no\n{1}'''\n# %%\nb = 1\n")
    assert [c.marker_line for c in parsed.cells] == [1, 5]


def test_indented_marker_is_not_a_boundary():
    parsed = parse_cells(src('''
        # %%
        for i in range(3):
            # %% not a cell
            print(i)
        # %%
        done = True
    '''))
    assert len(parsed.cells) == 2
    assert "    # %% not a cell" in parsed.cells[0].code


def test_not_a_marker_when_more_text_follows_percent_signs():
    parsed = parse_cells("# %%time\nx = 1\n")
    assert parsed.is_script


def test_code_before_the_first_marker_is_a_cell():
    parsed = parse_cells("import os\n\n# %% next\nx = 1\n")
    head, nxt = parsed.cells
    assert (head.index, head.title, head.marker_line, head.code_line) == (0, "", 1, 1)
    assert head.code == "import os\n"
    assert (nxt.index, nxt.marker_line) == (1, 3)


def test_blank_text_before_the_first_marker_is_not_a_cell():
    parsed = parse_cells("\n\n   \n# %%\nx = 1\n")
    assert len(parsed.cells) == 1 and parsed.cells[0].marker_line == 4


def test_comment_only_header_before_the_first_marker_is_not_a_cell():
    parsed = parse_cells("#!/usr/bin/env python\n# Licence: MIT\n\n# %%\nx = 1\n")
    assert len(parsed.cells) == 1 and parsed.cells[0].marker_line == 4


def test_code_line_skips_leading_blank_lines():
    parsed = parse_cells("# %%\n\n\nx = 1\n\n\n# %%\n")
    first, empty = parsed.cells
    assert first.code_line == 4 and first.code == "x = 1\n"
    assert empty.code == "" and empty.marker_line == 7


def test_file_without_markers_is_a_script():
    parsed = parse_cells("import sys\nprint(sys.argv)\n")
    assert parsed.is_script
    assert len(parsed.cells) == 1 and parsed.cells[0].code_line == 1
    assert parse_cells("").is_script and parse_cells("").cells == ()


def test_crlf_and_bom_and_odd_line_separators():
    parsed = parse_cells("\ufeff# %%\r\na = 1\r\n# %%\r\nb = '\x0c'\r\n")
    assert [c.marker_line for c in parsed.cells] == [1, 3]
    assert parsed.cells[0].code == "a = 1\n"
    # \x0c is not a line break for Python: line numbers must not shift
    parsed = parse_cells("x = 1 \x0c\n# %%\ny = 2\n")
    assert parsed.cells[1].marker_line == 2


def test_broken_code_still_splits_into_cells():
    parsed = parse_cells("# %%\nx = (1,\n# %%\ny = 2\n# %%\nz = 3\n")
    assert [c.marker_line for c in parsed.cells] == [1, 3, 5]


def test_unclosed_triple_quote_mid_edit_does_not_swallow_later_cells():
    parsed = parse_cells('# %%\nx = """\n# %%\ny = 2\n# %%\nz = 3\n')
    assert [c.marker_line for c in parsed.cells] == [1, 3, 5]


def test_parse_takes_str():
    """Decoding (and non-UTF-8 bytes) is the caller's job: parse_cells works on text."""
    text = b"# %%\nname = '\xe9'\n".decode("latin-1")
    assert parse_cells(text).cells[0].code == "name = '\xe9'\n"


# ------------------------------------------------------------------------------ hashes


def test_hash_stable_under_trailing_whitespace_and_blank_lines():
    a = parse_cells("# %%\nx = 1\ny = 2\n# %%\n").cells[0]
    b = parse_cells("# %%\nx = 1   \ny = 2\t\n\n\n   \n# %%\n").cells[0]
    assert a.hash == b.hash == cell_hash("x = 1\ny = 2")
    assert cell_hash("x = 1") != cell_hash("x = 2")
    assert cell_hash("  x = 1") != cell_hash("x = 1")  # leading indentation matters


def test_hash_independent_of_position():
    a = parse_cells("# %%\nx = 1\n").cells[0]
    b = parse_cells("# %%\nimport os\n# %% moved\nx = 1\n").cells[1]
    assert a.hash == b.hash


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("code, names", [
    ("x = 1", {"x"}),
    ("a, (b, *c) = f()", {"a", "b", "c"}),
    ("x += 1", {"x"}),
    ("x: int = 1", {"x"}),
    ("x: int", set()),
    ("def f(a):\n    b = a\n", {"f"}),
    ("async def g():\n    pass\n", {"g"}),
    ("class C:\n    attr = 1\n", {"C"}),
    ("import numpy as np, os.path", {"np", "os"}),
    ("from a import b, c as d", {"b", "d"}),
    ("for i, j in pairs:\n    k = i\n", {"i", "j", "k"}),
    ("with open(p) as fh, lock:\n    data = fh.read()\n", {"fh", "data"}),
    ("ys = [x for x in range(3)]", {"ys"}),
    ("s = {k: v for k, v in d.items()}", {"s"}),
    ("if (n := 10) > 5:\n    pass\n", {"n"}),
    ("total = [y := v for v in vals]", {"total", "y"}),
    ("df['col'] = 1\nmodel.lr = 0.1", {"df", "model"}),
    ("def f():\n    global g\n    g = 1\n", {"f", "g"}),
    ("try:\n    pass\nexcept Exception as e:\n    pass\n", set()),
    ("match p:\n    case [a, *rest]:\n        pass\n    case {'k': v, **kw}:\n        pass\n",
     {"a", "rest", "v", "kw"}),
    ("del x", {"x"}),
    ("x = = 1", set()),
])
def test_defined_names(code, names):
    assert defined_names(code) == names


@pytest.mark.parametrize("code, names", [
    ("y = x + 1", {"x"}),
    ("x += 1", {"x"}),
    ("print(df.head())", {"print", "df"}),
    ("ys = [x * scale for x in data]", {"scale", "data"}),
    ("ys = [x for x in range(3)]\nprint(x)", {"range", "print", "x"}),
    ("def f(a):\n    b = a\n    return b + c\n", {"c"}),
    ("f = lambda a: a + k", {"k"}),
    ("def outer():\n    v = 1\n    def inner():\n        return v + w\n    return inner\n", {"w"}),
    ("class C:\n    size = 3\n    def m(self):\n        return size\n", {"size"}),
    ("def f(x=default) -> Ret:\n    pass\n", {"default", "Ret"}),
    ("@decorator\nclass C(Base):\n    pass\n", {"decorator", "Base"}),
    ("def f():\n    global g\n    return g\n", {"g"}),
    ("x = = 1", set()),
])
def test_used_names(code, names):
    assert used_names(code) == names


# ------------------------------------------------------------------------------ planning


def cells_of(*codes: str) -> tuple[Cell, ...]:
    return parse_cells("".join(f"# %%\n{c}\n" for c in codes)).cells


def hashes(cells) -> list[str]:
    return [c.hash for c in cells]


def test_linear_first_changed_cell_and_everything_after():
    old = cells_of("data = load()", "model = fit(data)", "plot(model)", "report()")
    new = cells_of("data = load()", "model = fit(data, lr=0.1)", "plot(model)", "report()")
    assert plan_reruns(new, hashes(old), "linear") == [1, 2, 3]


def test_nothing_changed_plans_nothing():
    cells = cells_of("a = 1", "b = a")
    assert plan_reruns(cells, hashes(cells), "linear") == []
    assert plan_reruns(cells, hashes(cells), "reactive") == []


def test_editing_the_last_cell_reruns_only_it():
    old = cells_of("data = slow_load()", "plot(data)")
    new = cells_of("data = slow_load()", "plot(data, log=True)")
    assert plan_reruns(new, hashes(old), "linear") == [1]
    assert plan_reruns(new, hashes(old), "reactive") == [1]


def test_first_run_runs_everything():
    cells = cells_of("a = 1", "b = 2")
    assert plan_reruns(cells, [], "linear") == [0, 1]
    assert plan_reruns(cells, [None, None], "reactive") == [0, 1]


def test_failed_cell_reruns():
    cells = cells_of("a = 1", "b = a / 0", "c = 3")
    last_ok = [cells[0].hash, None, None]
    assert plan_reruns(cells, last_ok, "linear") == [1, 2]
    assert plan_reruns(cells, last_ok, "reactive") == [1, 2]


def test_linear_new_cell_at_the_end():
    old = cells_of("a = 1", "b = 2")
    new = cells_of("a = 1", "b = 2", "c = 3")
    assert plan_reruns(new, hashes(old), "linear") == [2]
    assert plan_reruns(new, hashes(old), "reactive") == [2]


def test_linear_inserted_cell_reruns_from_there():
    old = cells_of("a = 1", "b = a", "c = 3")
    new = cells_of("a = 1", "x = 9", "b = a", "c = 3")
    assert plan_reruns(new, hashes(old), "linear") == [1, 2, 3]


def test_reactive_inserted_cell_does_not_rerun_unrelated_cells():
    old = cells_of("a = 1", "b = a", "c = 3")
    new = cells_of("a = 1", "x = 9", "b = a", "c = 3")
    assert plan_reruns(new, hashes(old), "reactive") == [1]
    new = cells_of("a = 1", "a = 2", "b = a", "c = 3")
    assert plan_reruns(new, hashes(old), "reactive") == [1, 2]


def test_deleted_cell():
    old = cells_of("a = 1", "b = 2", "c = 3")
    new = cells_of("a = 1", "c = 3")
    assert plan_reruns(new, hashes(old), "linear") == [1]
    assert plan_reruns(new, hashes(old), "reactive") == []
    assert plan_reruns(cells_of("a = 1", "b = 2"), hashes(old), "linear") == []


def test_reactive_reruns_readers_of_changed_names_transitively():
    old = cells_of("raw = load()", "clean = tidy(raw)", "other = 5", "model = fit(clean)",
                   "print(other)", "plot(model)")
    new = cells_of("raw = load(fast=True)", "clean = tidy(raw)", "other = 5", "model = fit(clean)",
                   "print(other)", "plot(model)")
    assert plan_reruns(new, hashes(old), "reactive") == [0, 1, 3, 5]
    assert plan_reruns(new, hashes(old), "linear") == [0, 1, 2, 3, 4, 5]


def test_reactive_only_later_cells_depend():
    old = cells_of("print(x)", "x = 1")
    new = cells_of("print(x)", "x = 2")
    assert plan_reruns(new, hashes(old), "reactive") == [1]


def test_reactive_mutation_counts_as_a_definition():
    old = cells_of("df = load()", "df['y'] = 1", "show(df)")
    new = cells_of("df = load()", "df['y'] = 2", "show(df)")
    assert plan_reruns(new, hashes(old), "reactive") == [1, 2]


def test_reactive_cell_with_syntax_error_is_still_planned():
    old = cells_of("a = 1", "b = a", "c = b")
    new = cells_of("a = 1", "b = = a", "c = b")
    assert plan_reruns(new, hashes(old), "reactive") == [1]
    assert plan_reruns(new, hashes(old), "linear") == [1, 2]


def test_unchanged_cells_before_the_edit_never_rerun():
    old = cells_of("a = 1", "b = 2", "c = a + b")
    new = cells_of("a = 1", "b = 3", "c = a + b")
    for policy in ("linear", "reactive"):
        assert 0 not in plan_reruns(new, hashes(old), policy)


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown rerun policy"):
        plan_reruns(cells_of("a = 1"), [], "eager")


# ------------------------------------------------------------------------------ property


_line = st.text(alphabet=st.sampled_from("abcxyz =+1()_ #%'\"[]"), max_size=20).filter(
    lambda s: not s.startswith("#"))
_cell_body = st.lists(_line, min_size=1, max_size=4).map(lambda ls: "\n".join(ls))
_title = st.text(alphabet=st.sampled_from("abcdef XYZ"), max_size=10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_title, _cell_body), min_size=1, max_size=5))
def test_round_trip_written_cells_parse_back(cells):
    """Cells written in percent format come back with their titles, code and line numbers
    (bodies avoid triple quotes and leading '#', so every marker we write is a real marker)."""
    cells = [(t, b) for t, b in cells if '"""' not in b and "'''" not in b]
    if not cells:
        return
    text = "".join(f"# %% {title}\n{body}\n" for title, body in cells)
    parsed = parse_cells(text)
    assert not parsed.is_script
    assert len(parsed.cells) == len(cells)
    lines = text.split("\n")
    for cell, (title, body) in zip(parsed.cells, cells):
        assert cell.title == " ".join(title.split())
        body_lines = body.split("\n")
        while body_lines and not body_lines[0].strip():
            body_lines.pop(0)
        assert cell.hash == cell_hash("\n".join(body_lines))
        assert lines[cell.marker_line - 1].startswith("# %%")
        if cell.code:
            assert lines[cell.code_line - 1] == cell.code.split("\n")[0]
