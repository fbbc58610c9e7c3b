"""Issue 15 on the test cluster: a value, a stdlib `_repr_png_` image (the test image has no
matplotlib) and `[sync] pull` through Kubernetes exec streams, before the pod is deleted."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.clitools import devloop, events, last

pytestmark = pytest.mark.kube

NB = """# %%
import os, struct, zlib
class Grey:
    def _repr_png_(self):
        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        raw = b"".join(b"\\x00" + b"\\x80" * 8 for _ in range(4))
        return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 4, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
os.makedirs("results", exist_ok=True)
open("results/metrics.csv", "w").write("step,loss\\n1,0.5\\n")
Grey()
# %%
6 * 7
"""


def test_display_and_pull_through_the_pod(kube_project: Path) -> None:
    toml = kube_project / "devloop.toml"
    toml.write_text(toml.read_text() + '[sync]\npull = ["results/"]\n')
    (kube_project / "nb.py").write_text(NB)
    res = devloop("run", "nb.py", "--profile", "kube", "--json", cwd=kube_project, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    evs = events(res.stdout)
    shown = [e for e in evs if e["event"] == "display"]
    assert [(e["cell"], e["mime"]) for e in shown] == [(0, "image/png"), (1, "text/plain")]
    data = (kube_project / shown[0]["path"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (8, 4)
    assert shown[1]["text"] == "42"
    assert last(evs, "pull")["files"] == ["results/metrics.csv"]
    assert (kube_project / "results" / "metrics.csv").read_text() == "step,loss\n1,0.5\n"
