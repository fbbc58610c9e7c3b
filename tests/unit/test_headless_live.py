"""The live line of `devloop run` / `watch` (issue 18): a `\\r`-redrawn line (tqdm, Keras, a
hand-written loop) is shown while it changes -- in place on a terminal (a real pty here), and in a
log (a pipe) as its latest state at most every 5 s plus its final state. The rate is tested with
an injected clock: no sleeps, no timed assertions."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import termios

from devloop.core import events as ev
from devloop.core.textfit import fit_middle
from devloop.headless import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def bar(i: int, total: int = 100) -> str:
    return f"\rtrain: {i:3d}%|{'#' * (i // 10):10s}| {i}/{total} [00:01<00:00, 12.3it/s]"


def test_off_a_terminal_the_latest_state_is_printed_every_5_s_while_it_changes() -> None:
    clock, out, err = Clock(), io.StringIO(), io.StringIO()
    reporter = Reporter(out=out, err=err, github=False, clock=clock)
    reporter(ev.CellStart(1, 6, "train"))
    for i in range(0, 101):  # 100 redraws over 12 s: one every 0.12 s
        reporter(ev.Output(1, "stderr", bar(i)))
        reporter.live.tick()  # what the timer does; nothing is due most of the time
        clock.now += 0.12
    reporter(ev.Output(1, "stderr", "\n"))
    reporter(ev.CellDone(1, True, 12_000.0))
    lines = err.getvalue().splitlines()
    # at 5 s and 10 s: the state then; then the final state once -- never one line per redraw
    assert lines == ["[1] " + bar(42)[1:], "[1] " + bar(84)[1:], "[1] " + bar(100)[1:]]


def test_a_state_left_unprinted_is_printed_by_the_timer_when_due() -> None:
    clock, out = Clock(), io.StringIO()
    reporter = Reporter(out=out, err=out, github=False, clock=clock)
    reporter(ev.Output(0, "stdout", "\rstep 1"))
    clock.now += 1
    reporter(ev.Output(0, "stdout", "\rstep 2"))  # then the loop goes quiet for a while
    clock.now += 3
    reporter.live.tick()
    assert out.getvalue() == ""  # not due yet: 4 s since the line began
    clock.now += 1
    reporter.live.tick()
    assert out.getvalue() == "[0] step 2\n"
    clock.now += 30
    reporter.live.tick()  # unchanged: nothing new to print
    reporter(ev.Output(0, "stdout", "\n"))  # its final state is the one printed: not again
    assert out.getvalue() == "[0] step 2\n"


def test_a_short_progress_line_prints_only_its_final_state() -> None:
    clock, out = Clock(), io.StringIO()
    reporter = Reporter(out=out, err=out, github=False, clock=clock)
    for i in range(50):
        reporter(ev.Output(0, "stdout", f"\r{i}"))
        clock.now += 0.05
        reporter.live.tick()
    reporter(ev.CellDone(0, True, 2500.0))
    assert out.getvalue().splitlines()[0] == "[0] 49"
    assert len(out.getvalue().splitlines()) == 2  # the bar's end, the cell's end


def open_pty(columns: int = 60) -> tuple[int, io.TextIOWrapper]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n translation: read back what was written
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8",
                                    write_through=True)


def read_all(master: int) -> str:
    chunks = []
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


def screen(raw: str) -> list[str]:
    """What a terminal shows for `raw`: \\r goes to the row's start, ESC[K erases to its end."""
    rows, row, col = [], "", 0
    for piece in re.split(r"(\r|\n|\x1b\[K)", raw):
        if piece == "\r":
            col = 0
        elif piece == "\n":
            rows.append(row)
            row, col = "", 0
        elif piece == "\x1b[K":
            row = row[:col]
        elif piece:
            row = row[:col] + piece + row[col + len(piece):]
            col += len(piece)
    rows.append(row)
    return rows


def test_on_a_terminal_the_live_line_is_redrawn_in_place_and_other_lines_print_above_it() -> None:
    master, tty = open_pty(columns=60)
    try:
        reporter = Reporter(out=tty, err=tty, github=False)
        reporter(ev.CellStart(1, 6, "train"))
        reporter(ev.Output(1, "stderr", bar(10)))
        first = read_all(master)
        assert first.endswith("\r\x1b[K[1] " + bar(10)[1:])  # shown at once, not at the cell's end
        reporter(ev.Output(1, "stderr", bar(50)))
        reporter(ev.Output(1, "stdout", "epoch 1 loss 0.3\n"))  # a line while the bar is drawn
        reporter(ev.Output(1, "stderr", bar(100, total=1_000_000_000_000)))  # wider than 60
        raw = first + read_all(master)
        rows = screen(raw)
        assert rows[-2] == "[1] epoch 1 loss 0.3"  # above the bar, not inside it
        live = rows[-1]
        assert len(live) == 59 and "…" in live
        assert live.startswith("[1] train:") and live.endswith("[00:01<00:00, 12.3it/s]")  # its tail kept
        reporter(ev.Output(1, "stderr", "\n"))
        reporter(ev.CellDone(1, True, 1000.0))
        rows = screen(raw + read_all(master))
        assert rows[-3] == "[1] " + bar(100, total=1_000_000_000_000)[1:]  # the final line in full
        assert rows[-2].startswith("── cell 1 ok")
    finally:
        tty.close()
        os.close(master)


def test_a_10_mb_line_on_a_terminal_costs_its_length_not_its_square() -> None:
    master, tty = open_pty(columns=40)
    try:
        reporter = Reporter(out=tty, err=tty, github=False)
        for _ in range(10_000):
            reporter(ev.Output(0, "stdout", "x" * 1000))
            read_all(master)
        assert reporter._live_text((0, "stdout"), 100).endswith("x" * 100)
    finally:
        tty.close()
        os.close(master)


def test_fit_middle_keeps_head_and_tail() -> None:
    text = "epoch 3: 45%|####5     | 45/100 [00:01<00:00, 12.3it/s]"
    assert fit_middle(text, 80) == text
    cut = fit_middle(text, 30)
    assert len(cut) == 30 and cut.startswith("epoch 3") and cut.endswith("12.3it/s]")
    assert fit_middle("漢字漢字漢字", 5) == "…漢字"  # 2 columns each: the tail's share fits two
