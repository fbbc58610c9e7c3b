"""Images saved under .devloop/outputs/<run>/: one folder per pass, the newest few kept."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from devloop.core.outputs import OutputStore

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def message(k: int, data: bytes = PNG, mime: str = "image/png") -> dict:
    return {"type": "display", "k": k, "mime": mime, "width": 3, "height": 2,
            "data": base64.b64encode(data).decode()}


def test_images_of_a_pass_share_a_run_folder_and_keep_their_bytes(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    store.next_run()
    first = store.event(message(1), cell=2)
    second = store.event(message(1, b"<svg/>", "image/svg+xml"), cell=3)
    assert first.path.startswith(".devloop/outputs/") and first.path.endswith("/cell2-1.png")
    assert second.path.endswith("/cell3-1.svg")
    assert Path(first.path).parent == Path(second.path).parent
    assert (tmp_path / first.path).read_bytes() == PNG and first.bytes == len(PNG)
    assert (first.width, first.height) == (3, 2)
    again = store.event(message(1), cell=2)  # a replayed event: kept beside, not over
    assert again.path.endswith("/cell2-1.2.png")


def test_only_the_newest_runs_are_kept(tmp_path: Path) -> None:
    store = OutputStore(tmp_path, keep=3)
    paths = []
    for n in range(5):
        store.next_run()
        event = store.event(message(1), cell=0)
        folder = (tmp_path / event.path).parent
        os.utime(folder, ns=(n * 10**9, n * 10**9))  # mtimes in the order made
        paths.append(folder)
    kept = sorted(p for p in (tmp_path / ".devloop" / "outputs").iterdir())
    assert kept == sorted(paths[-3:])


def test_text_values_write_nothing_and_a_damaged_image_says_so(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    value = store.event({"mime": "text/plain", "text": "42"}, cell=0)
    assert (value.text, value.path) == ("42", "")
    bad = store.event({"mime": "image/png", "k": 1, "data": "%%%"}, cell=0)
    assert bad.mime == "text/plain" and "damaged" in bad.text
    assert not (tmp_path / ".devloop").exists()
