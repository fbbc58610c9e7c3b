"""Readable headless output: a cell's output arriving in many chunks prints the same lines as in
one chunk, and an unfinished line (a 10 MB line without a newline, a tqdm bar redrawn with \\r)
is kept the way a terminal shows it."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devloop.core import events as ev
from devloop.headless import Reporter


def feed(chunks, cell=0, stream="stdout"):
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out=out, err=err, github=False)
    for chunk in chunks:
        reporter(ev.Output(cell=cell, stream=stream, text=chunk))
    reporter(ev.CellDone(cell=cell, ok=True, ms=1.0))
    return out.getvalue(), err.getvalue()


def test_a_long_line_in_many_chunks_is_one_line():
    chunks = ["x" * 1000] * 10_000 + ["y\n", "next"]
    out, _ = feed(chunks)
    lines = out.split("\n")
    assert lines[0] == "[0] " + "x" * 10_000_000 + "y"
    assert lines[1] == "[0] next"
    assert lines[2].startswith("── cell 0 ok")


def test_a_progress_bar_redrawn_in_place_keeps_only_its_last_state():
    bars = [f"\r{i:3d}%|{'#' * (i // 10):10s}|" for i in range(101)]
    out, _ = feed(bars * 200)  # never ends its line: the cell's end completes it
    assert out.split("\n")[0] == "[0] 100%|##########|"

    out, _ = feed(bars + ["\n", "done\n"])
    assert out.split("\n")[:2] == ["[0] 100%|##########|", "[0] done"]


def test_crlf_split_across_chunks_is_one_line_end():
    out, err = feed(["a\r", "\nb\r", "c\r", "\n"], stream="stderr")
    assert err == "[0] a\n[0] c\n"
    assert out.startswith("── cell 0 ok")


@pytest.mark.parametrize("chunks", [["aaaaaa\r\r\n"], ["aaaaaa\r", "\r\n"], ["aaaaaa\r\r", "\n"],
                                    ["aaaaaa\r", "\r", "\n"]])
def test_carriage_returns_before_a_newline_end_the_line_as_a_terminal_shows_it(chunks):
    """Found by the property below in CI: 'aaaaaa\\r\\r\\n' printed an empty line when whole."""
    assert feed(chunks)[0].startswith("[0] aaaaaa\n")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab\r\n", max_size=60), cuts=st.lists(st.integers(0, 60), max_size=12))
def test_chunking_never_changes_complete_lines(text, cuts):
    chunks, last = [], 0
    for cut in sorted(set(c for c in cuts if c <= len(text))):
        chunks.append(text[last:cut])
        last = cut
    chunks.append(text[last:])
    assert feed(chunks) == feed([text])
