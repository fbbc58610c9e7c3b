"""Terminal graphics for figures inline in the log: the Kitty graphics protocol and Sixel.

The log is a virtual view drawn row by row (logview.py), so an inline figure is a run of log
rows, one per cell row of the image, and each protocol is made to fit that:

- **Kitty** (Unicode placeholders): the PNG is sent to the terminal once, with a virtual
  placement of `cols x rows` cells; each log row is then ordinary text, placeholder characters
  (U+10EEEE with diacritics naming the row and column) coloured with the image's id. The rows
  scroll, wrap at the edge and leave the screen like any text, and the terminal draws the image
  wherever they are.
- **Sixel**: the image is cut into one Sixel band per cell row, encoded once on a thread. A
  row drawn on screen carries its own band, preceded by a cursor move to where the row is, so
  any subset of the rows (a partly scrolled figure, a redraw of a few rows) draws exactly those
  rows and a text row drawn over a band erases it, as text does.
- **Half blocks** everywhere else: plain coloured `▀` text (image.py's `halfblock_rows`), which
  is also what every row holds as its text, for search, plain views and a screen behind a dialog.

The protocol is chosen by what the terminal answered when textual-image was imported before the
app started (`image.prepare`), or forced by `[ui] images`.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
from dataclasses import dataclass
from pathlib import Path

KITTY_CHUNK = 4096  # base64 characters per graphics message (the protocol's limit)
KITTY_KEPT = 64  # images kept in the terminal; the oldest is deleted (its rows fall back)
DEFAULT_CELL = (10, 20)  # pixels of a cell when the terminal does not say

_PLACEHOLDER = "\U0010eeee"
_ids = itertools.count(random.randint(0, 2**24))
_HIGH_BYTE = random.randint(1, 255)


@dataclass(frozen=True, slots=True)
class RowGraphic:
    """What one log row of an inline figure draws with, besides its half-block text."""

    kind: str  # "kitty" | "sixel"
    data: str  # kitty: the placeholder row (ANSI text); sixel: the row's band (a DCS string)
    cols: int
    image_id: int = 0  # kitty: the terminal's image id (deleted when too many are kept)


def resolve(mode: str) -> str:
    """The protocol `[ui] images = mode` draws inline figures with: kitty | sixel | halfblock |
    off. `auto` takes what textual-image found the terminal supports (half blocks where it
    found neither, or was not imported)."""
    if mode in ("kitty", "sixel", "halfblock", "off"):
        return mode
    try:
        import sys

        renderable = sys.modules.get("textual_image.renderable")
        chosen = getattr(renderable, "Image", None)
        name = getattr(chosen, "__module__", "")
    except Exception:  # noqa: BLE001 - a broken install: half blocks
        return "halfblock"
    if name.endswith(".tgp"):
        return "kitty"
    if name.endswith(".sixel"):
        return "sixel"
    return "halfblock"


def cell_pixels() -> tuple[int, int]:
    """(width, height) of a terminal cell in pixels, as the terminal said when textual-image
    asked it (before the app started), else a common 10 x 20."""
    try:
        from textual_image._terminal import get_cell_size

        if hasattr(get_cell_size, "_result"):
            size = get_cell_size._result
            if size.width > 0 and size.height > 0:
                return size.width, size.height
    except Exception:  # noqa: BLE001 - not installed
        pass
    return DEFAULT_CELL


def geometry(width: int, height: int, max_cols: int, max_rows: int,
             cell: tuple[int, int] = DEFAULT_CELL) -> tuple[int, int]:
    """(cols, rows) of cells a width x height image takes, never enlarged past its pixels."""
    cw, ch = cell
    scale = min(max_cols * cw / width, max_rows * ch / height, 1.0)
    cols = max(1, round(width * scale / cw))
    rows = max(1, round(height * scale / ch))
    return min(cols, max_cols), min(rows, max_rows)


# -- Kitty -------------------------------------------------------------------------------------

def new_kitty_id(truecolor: bool = True) -> int:
    """An image id for this process. The placeholder's foreground colour carries its low bits
    and must reach the terminal exactly: on a 24-bit terminal 24 bits (Textual passes 24-bit
    colours through), else a 256-colour palette index 16..255 (a 24-bit colour would be rounded
    to the palette, and Textual turns palette colours into 24-bit ones on a 24-bit terminal, so
    the encoding follows the depth Textual drew with). The high byte, the same for the whole
    process, is the third diacritic: two devloop apps in one terminal rarely share ids."""
    if truecolor:
        return (_HIGH_BYTE << 24) | (1 + next(_ids) % (2**24 - 1))
    palette = _palette_ids()
    return (_HIGH_BYTE << 24) | palette[next(_ids) % len(palette)]


def _palette_ids() -> list[int]:
    """The 256-colour indices that survive Textual's round trip through 24-bit colour and back
    (16..255 except the few grays that have a twin: 59, 102, ..., 247..255 come back as
    another index)."""
    from rich.color import Color, ColorSystem

    return [n for n in range(16, 256)
            if Color.from_triplet(Color.from_ansi(n).get_truecolor()).downgrade(ColorSystem.EIGHT_BIT).number == n]


def kitty_message(payload: str = "", **keys: object) -> str:
    """One graphics command. Inside tmux it is wrapped for passthrough (tmux 3.3+ with
    `set -g allow-passthrough on`): placeholders are plain text to tmux, so the image then shows
    in the kitty terminal around it and moves with tmux's own scrolling and panes."""
    fields = ",".join(f"{key}={value}" for key, value in keys.items())
    command = f"\x1b_G{fields}{';' + payload if payload else ''}\x1b\\"
    if os.environ.get("TMUX"):
        return "\x1bPtmux;" + command.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return command


def kitty_transmit(png: bytes, image_id: int, cols: int, rows: int) -> str:
    """The escape sequences that send a PNG to the terminal and place it virtually over
    cols x rows cells (drawn where its placeholders are). Quiet: the terminal answers nothing."""
    data = base64.standard_b64encode(png).decode("ascii")
    chunks = [data[i:i + KITTY_CHUNK] for i in range(0, len(data), KITTY_CHUNK)] or [""]
    out = []
    for number, chunk in enumerate(chunks):
        more = 1 if number < len(chunks) - 1 else 0
        if number == 0:
            out.append(kitty_message(chunk, a="t", f=100, i=image_id, q=2, m=more))
        else:
            out.append(kitty_message(chunk, m=more))
    out.append(kitty_message(a="p", U=1, i=image_id, c=cols, r=rows, q=2))
    return "".join(out)


def kitty_delete(image_id: int) -> str:
    return kitty_message(a="d", d="I", i=image_id, q=2)


def kitty_rows(image_id: int, cols: int, rows: int, truecolor: bool = True) -> list[str]:
    """The placeholder text of each row: the colour and the third diacritic name the image, the
    first two the row and column (0-based), so every cell says which part of the image it shows."""
    from textual_image.renderable.tgp import _NUMBER_TO_DIACRITIC as marks

    if truecolor:
        colour = "\x1b[38;2;%d;%d;%dm" % ((image_id >> 16) & 255, (image_id >> 8) & 255, image_id & 255)
    else:
        colour = "\x1b[38;5;%dm" % (image_id & 255)
    high = chr(marks[(image_id >> 24) & 255])
    return [colour + "".join(_PLACEHOLDER + chr(marks[r]) + chr(marks[c]) + high for c in range(cols))
            + "\x1b[39m" for r in range(rows)]


def kitty_png(path: Path, max_pixels: tuple[int, int]) -> bytes | None:
    """The PNG to send: the file itself when it is a PNG of reasonable size, else a PNG of the
    image shrunk to at most max_pixels (a terminal need not hold a 4000 x 4000 figure)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) <= 2 << 20:
        return raw
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:
            img.thumbnail(max_pixels)
            out = io.BytesIO()
            img.save(out, "PNG")
            return out.getvalue()
    except Exception:  # noqa: BLE001 - not an image Pillow reads (an SVG)
        return None


# -- Sixel -------------------------------------------------------------------------------------

def sixel_bands(path: Path, cols: int, rows: int, cell: tuple[int, int]) -> list[str]:
    """The image fitted into cols x rows cells (aspect kept, centred on white) as one Sixel
    image per cell row. Empty when the file is not an image Pillow reads (an SVG)."""
    try:
        from PIL import Image
        from textual_image._sixel import image_to_sixels
    except ImportError:
        return []
    try:
        with Image.open(path) as opened:
            img = opened.convert("RGBA")
    except Exception:  # noqa: BLE001 - an SVG, a damaged file
        return []
    if img.width <= 0 or img.height <= 0:
        return []
    cw, ch = cell
    box = (cols * cw, rows * ch)
    img.thumbnail(box, Image.Resampling.BILINEAR, reducing_gap=2.0)  # 3x faster than Lanczos here
    canvas = Image.new("RGBA", box, (255, 255, 255, 255))
    canvas.alpha_composite(img, ((box[0] - img.width) // 2, (box[1] - img.height) // 2))
    canvas = canvas.convert("RGB")
    return [image_to_sixels(canvas.crop((0, r * ch, box[0], (r + 1) * ch)), background=(255, 255, 255, 1.0))
            for r in range(rows)]


def sixel_row(band: str, x: int, y: int, cols: int) -> str:
    """One row's band drawn at screen cell (x, y), the cursor left after the row's last
    column as if cols cells of text had been written."""
    return f"\x1b[{y + 1};{x + 1}H{band}\x1b[{y + 1};{x + cols + 1}H"
