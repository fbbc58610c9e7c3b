"""Issue 15 with the agent on Python 3.8 (the oldest a target may have), through a local
profile with a `workdir:` (it syncs like a remote): values, `;`, display(), a stdlib PNG, and
outputs pulled back."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.agent_pythons import oldest_python
from tests.clitools import devloop, events, last

OLD = oldest_python()
pytestmark = pytest.mark.skipif(OLD is None, reason="NO PYTHON 3.8 on this machine: the agent was NOT tested "
                                                    "on the oldest Python it supports")

NB = textwrap.dedent("""\
    # %%
    import os, struct, zlib, sys
    class Dot:
        def _repr_png_(self):
            def chunk(kind, body):
                return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
            return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(b"\\x00\\x10\\x20\\x00\\x30\\x40")) + chunk(b"IEND", b""))
    os.makedirs("results", exist_ok=True)
    open("results/out.txt", "w").write("from %d.%d" % sys.version_info[:2])
    display(Dot(), [1, 2])
    sys.version_info[:2]
    # %%
    "hidden";
""")


def test_values_images_and_pull_with_the_agent_on_python_3_8(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "profiles").mkdir(parents=True)
    (project / "devloop.toml").write_text('[sync]\npull = ["results/"]\n')
    (project / "nb.py").write_text(NB)
    (project / "profiles" / "old.yaml").write_text(f"kind: local\npython: {OLD}\nworkdir: {tmp_path / 'remote'}\n")
    res = devloop("run", "nb.py", "--profile", "old", "--json", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    evs = events(res.stdout)
    assert last(evs, "ready")["python"].startswith("3.8.")
    shown = [(e["cell"], e["mime"], e["text"]) for e in evs if e["event"] == "display"]
    assert shown == [(0, "image/png", ""), (0, "text/plain", "[1, 2]"), (0, "text/plain", "(3, 8)")]
    image = [e for e in evs if e["event"] == "display"][0]
    assert (project / image["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (image["width"], image["height"]) == (2, 2)
    assert last(evs, "pull")["files"] == ["results/out.txt"]
    assert (project / "results" / "out.txt").read_text() == "from 3.8"
