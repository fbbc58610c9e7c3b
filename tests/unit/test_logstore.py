"""The log's line store (no textual): lines split as a terminal shows them, bounded memory, and
unfinished lines (progress bars) kept apart until their newline."""

from __future__ import annotations

from devloop.ui.logstore import LogStore


def texts(lines) -> list[str]:
    return [line.text for line in lines]


def test_chunks_become_lines_and_a_tail_waits_for_its_newline() -> None:
    store = LogStore(scrollback=100)
    assert store.add_output(0, "stdout", "a\nb") == 1
    assert texts(store.ring(0)) == ["a"] and texts(store.partial_lines()) == ["b"]
    assert store.add_output(0, "stdout", "c\n") == 1
    assert texts(store.ring(0)) == ["a", "bc"] and store.partial_lines() == []


def test_a_carriage_return_progress_bar_is_replaced_in_place() -> None:
    store = LogStore(scrollback=100)
    version = store.partial_version
    store.add_output(2, "stderr", "\r 10%|#         |")
    assert texts(store.partial_lines()) == [" 10%|#         |"]
    store.add_output(2, "stderr", "\r 50%|#####     |")
    assert texts(store.partial_lines(2)) == [" 50%|#####     |"] and store.partial_lines(1) == []
    assert store.partial_version > version  # the app redraws the live line when this moves
    store.add_output(2, "stderr", "\r100%|##########|\n")
    assert texts(store.ring(2)) == ["100%|##########|"] and store.partial_lines() == []


def test_a_cells_end_stores_its_unfinished_line() -> None:
    store = LogStore(scrollback=100)
    store.add_output(1, "stdout", "epoch 3 loss ")
    store.finish_cell(1)
    assert texts(store.ring(1)) == ["epoch 3 loss "] and store.partial_lines() == []


def test_scrollback_bounds_each_cell_and_counts_what_it_dropped() -> None:
    store = LogStore(scrollback=3)
    store.add_output(0, "stdout", "".join(f"{i}\n" for i in range(10)))
    assert texts(store.ring(0)) == ["7", "8", "9"] and store.ring(0).dropped == 7


def test_ansi_colours_do_not_count_toward_the_width() -> None:
    store = LogStore(scrollback=10)
    store.add_output(0, "stdout", "\x1b[32mok\x1b[0m\n")
    assert store.ring(0)[0].width == 2 and store.max_width == 2


def test_a_tail_that_arrives_with_a_newline_is_drawn_live() -> None:
    store = LogStore(scrollback=10)
    version = store.partial_version
    store.add_output(0, "stdout", "done\nepoch 2 ")
    assert store.partial_version > version and texts(store.partial_lines()) == ["epoch 2 "]
