"""Notebook-faithful cell semantics (issues 18 and 20): other markers, other languages, titles
without metadata, comment-only edits, in-place changes in reactive planning (all pure)."""

from __future__ import annotations

import textwrap

from devloop.core.cells import (
    bound_names,
    cell_hash,
    defined_names,
    parse_cells,
    plan_reruns,
    python_view,
    used_names,
)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def cells_of(*codes: str):
    return parse_cells("".join(f"# %%\n{c}\n" for c in codes)).cells


def hashes(cells) -> list[str]:
    return [c.hash for c in cells]


# -------------------------------------------------------------------- issue 20.5: other markers


def test_nbconvert_and_codecell_markers_are_cell_boundaries():
    parsed = parse_cells(src('''
        #!/usr/bin/env python
        # coding: utf-8

        # In[1]:


        import numpy as np


        # In[ ]:


        x = np.arange(3)

        # <codecell>
        print(x)
        # <markdowncell>
        # Some *text*
        # In[12]
        y = 2
    '''))
    assert not parsed.is_script
    assert [(c.index, c.marker_line, c.code) for c in parsed.cells] == [
        (0, 4, "import numpy as np\n"), (1, 10, "x = np.arange(3)\n"), (2, 15, "print(x)\n"),
        (3, 19, "y = 2\n")]
    assert [c.kind for c in parsed.all_cells] == ["code", "code", "code", "markdown", "code"]


def test_in_marker_inside_a_string_or_indented_is_not_a_boundary():
    parsed = parse_cells('# In[1]:\ns = """\n# In[2]:\n"""\n  # <codecell>\nt = 1\n')
    assert len(parsed.cells) == 1


# ------------------------------------------------- issue 20.4: other languages, titles without JSON


def test_cells_in_other_languages_are_skipped_and_listed():
    parsed = parse_cells(src('''
        # %%
        import pandas as pd

        # %% language="R"
        # library(ggplot2)
        # ggplot(mtcars)

        # %%
        %%html
        <b>bold</b>

        # %% magic_args="-i df" language="R"
        # summary(df)

        # %%
        %%latex
        $x^2$

        # %%
        print(pd.__name__)
    '''))
    assert [c.code for c in parsed.cells] == ["import pandas as pd\n", "print(pd.__name__)\n"]
    assert [c.index for c in parsed.cells] == [0, 1]
    assert [(c.language, c.marker_line) for c in parsed.skipped] == [
        ("R", 4), ("html", 8), ("R", 12), ("latex", 15)]


def test_title_drops_json_metadata():
    parsed = parse_cells('# %% Pandas plot {"tags": ["parameters"]}\nx = 1\n'
                         '# %% [code] {"tags": ["hide-input"], "a": {"b": 1}}\ny = 2\n')
    first, second = parsed.cells
    assert first.title == "Pandas plot" and first.metadata == {"tags": ["parameters"]}
    assert second.title == "" and second.metadata == {"tags": ["hide-input"], "a": {"b": 1}}
    assert parse_cells("# %% A {not json\nx = 1\n").cells[0].title == "A {not json"


# ------------------------------------------------------- issue 18.5: comment / whitespace edits


def test_comment_and_whitespace_edits_keep_the_hash():
    before = "import time  # load\nx = [1,2, 3]\nif x:\n    y = 1\n"
    after = "# Load the data (typo fixed)\nimport time\n\nx = [1, 2,  3]   # three\nif x:\n\n    y = 1  # one\n"
    assert cell_hash(before) == cell_hash(after)
    old, new = cells_of("data = load()  # slow", "print(data)"), cells_of("data = load()  # 3 s", "print(data)")
    assert plan_reruns(new, hashes(old), "linear") == []
    # code, strings and the block structure still count
    assert cell_hash("x = 1") != cell_hash("x = 2")
    assert cell_hash("s = '# not a comment'") != cell_hash("s = '# other'")
    assert cell_hash("if a:\n    b()\nc()") != cell_hash("if a:\n    b()\n    c()")
    # in a shell line `#` is not a comment
    assert cell_hash("!echo a # b") != cell_hash("!echo a # c")


def test_a_half_typed_edit_still_hashes():
    assert cell_hash('s = """open') != cell_hash('s = """opened')


# ----------------------------------------------------------- issue 20.2: in-place changes


def test_method_call_counts_as_redefining_for_reactive_planning():
    old = cells_of("model = Model()", "model.fit(X, y)", "print(model.n_features_in_)", "print(1)")
    new = cells_of("model = Model()", "model.fit(X2, y)", "print(model.n_features_in_)", "print(1)")
    assert plan_reruns(new, hashes(old), "reactive") == [1, 2]


def test_in_place_change_rules():
    assert defined_names("model.fit(X, y)\ncfg.lr = 0.1\nd['k'] = 1\nitems[0].append(2)") \
        == {"model", "cfg", "d", "items"}
    assert defined_names("for _ in range(3):\n    opt.step()\n") == {"_", "opt"}
    assert defined_names("print(a.b)\nx = df.mean()\ndef f():\n    m.fit()\n") == {"x", "f"}
    assert bound_names("model.fit(X, y)\nz = 1") == {"z"}


def test_names_of_cells_with_magics():
    code = "%matplotlib inline\n!pip install tqdm\nfiles = !ls\n%time x = load()\nimport os\n"
    assert defined_names(code) == {"files", "x", "os"}
    assert used_names(code) == {"load"}
    assert defined_names("%%time\ny = x + 1\n") == {"y"}
    assert python_view("%%time\ny = 1\n").split("\n")[:2] == ["", "y = 1"]


def test_a_commented_cell_magic_marks_another_language():
    parsed = parse_cells("# %%\nx = 1\n# %%\n# %%R\n# library(x)\n# %%\n# %%timeit is not a language\ny = 2\n")
    assert [c.code for c in parsed.cells] == ["x = 1\n", "# %%timeit is not a language\ny = 2\n"]
    assert [c.language for c in parsed.skipped] == ["R"]
