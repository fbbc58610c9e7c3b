"""Inline figures through Textual's real terminal driver and compositor, on a pty: the bytes a
terminal would get. (No terminal that draws Kitty or Sixel images runs here: this reads what it
would be sent, the outermost boundary.)"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

pytest.importorskip("PIL.Image")
ROOT = Path(__file__).resolve().parents[2]


def run_on_a_pty(project: Path, mode: str, colorterm: str) -> str:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app on the pty, as a terminal would run it
        env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=str(ROOT))
        env.pop("COLORTERM", None)
        env.pop("TMUX", None)  # inside tmux Kitty commands are wrapped for passthrough
        if colorterm:
            env["COLORTERM"] = colorterm
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "tests.ui.inline_graphics_app", str(project), mode],
                  env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 1200, 800))
    out, deadline = b"", time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # the app exited and the pty closed
                    break
                if not data:
                    break
                out += data
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode("utf-8", "replace")[-2000:]
    return out.decode("utf-8", "replace")


def test_sixel_bands_reach_the_terminal_each_at_its_row(tmp_path: Path) -> None:
    out = run_on_a_pty(tmp_path, "sixel", colorterm="")
    bands = re.findall(r"\x1b\[(\d+);(\d+)H(\x1bP[^\x1b]*\x1b\\)\x1b\[(\d+);(\d+)H", out)
    assert len(bands) >= 2, "no Sixel band reached the terminal intact"
    rows = sorted({int(row) for row, *_ in bands})
    assert rows == list(range(rows[0], rows[0] + len(rows)))  # consecutive rows, one band each
    for row, col, band, row_after, col_after in bands:
        assert row_after == row and int(col_after) > int(col)  # the cursor goes on after the band
        assert '"1;1;' in band


@pytest.mark.parametrize("colorterm", ["", "truecolor"])
def test_kitty_image_goes_before_its_placeholders_at_any_colour_depth(tmp_path: Path, colorterm: str) -> None:
    out = run_on_a_pty(tmp_path, "kitty", colorterm=colorterm)
    sent = re.search(r"\x1b_Ga=t,f=100,i=(\d+),", out)
    assert sent, "the image was not sent"
    image_id = int(sent.group(1))
    first_placeholder = out.find("\U0010eeee")
    assert sent.start() < first_placeholder
    # the placeholders' colour names the image, exactly, at the colour depth Textual draws with
    if colorterm == "truecolor":
        colour = "38;2;%d;%d;%d" % ((image_id >> 16) & 255, (image_id >> 8) & 255, image_id & 255)
    else:
        colour = "38;5;%d" % (image_id & 255)
    at = out.find("\U0010eeee")
    assert re.search(r"\x1b\[[0-9;]*%s[;m][^\x1b]*\U0010eeee" % colour, out), repr(out[at - 80:at + 8])
    assert f"\x1b_Ga=d,d=I,i={image_id},q=2\x1b\\" in out  # deleted when the app ends
