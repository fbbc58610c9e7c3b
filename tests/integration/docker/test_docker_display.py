"""Issue 15 on the Docker target: what a cell shows comes back through the container. The test
image has no matplotlib (a stdlib-only Python), so the image is an object with `_repr_png_`
made with zlib; the figure path is the same code once an image arrives (tests/integration/
test_display.py covers matplotlib on the local target)."""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path

import pytest

from devloop.core.targets.docker import LABEL_PROJECT
from tests.clitools import devloop, events, outputs

pytestmark = pytest.mark.docker

TEST_IMAGE = "devloop-test:hostpy"

CELLS = textwrap.dedent("""\
    # %% values
    import sys, zlib, struct
    x = 20
    x * 2 + 2
    # %% hidden
    x;
    # %% image
    class Gradient:
        def _repr_png_(self):  # 64x32, a grey gradient, PNG made with the stdlib
            def chunk(kind, body):
                return (struct.pack(">I", len(body)) + kind + body
                        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
            raw = b"".join(b"\\x00" + bytes(range(0, 256, 4)) for _ in range(32))
            return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 32, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    print("before")
    display(Gradient(), {"k": [1, 2]})
    print("mpl:", "matplotlib" in sys.modules)
    Gradient()
""")


@pytest.fixture
def docker_project(project: Path, docker_host, docker_client, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    (project / "devloop.toml").write_text(f'[project]\nname = "{project.name}"\n')
    (project / "nb.py").write_text(CELLS)
    (project / "profiles").mkdir()
    (project / "profiles" / "docker-test.yaml").write_text(f"kind: docker\nimage: {TEST_IMAGE}\nnetwork: none\n")
    yield project
    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_PROJECT}={project.name}"}):
        c.remove(force=True)


def test_values_display_and_images_come_back_from_the_container(docker_project: Path) -> None:
    res = devloop("run", "nb.py", "--profile", "docker-test", "--json", cwd=docker_project, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    evs = events(res.stdout)
    shown = [e for e in evs if e["event"] == "display"]
    assert [(e["cell"], e["mime"]) for e in shown] == [
        (0, "text/plain"), (2, "image/png"), (2, "text/plain"), (2, "image/png")]
    assert shown[0]["text"] == "42" and shown[2]["text"] == "{'k': [1, 2]}"
    for event, k in ((shown[1], 1), (shown[3], 2)):
        data = (docker_project / event["path"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (64, 32) == (event["width"], event["height"])
        assert event["bytes"] == len(data) and event["path"].endswith(f"/cell2-{k}.png")
    assert outputs(evs, 2) == "before\nmpl: False\n"
    order = [e["event"] for e in evs if e.get("cell") == 2 and e["event"] in ("output", "display")]
    assert order[0] == "output"  # what the cell printed first comes first


def test_a_script_in_the_container_gets_the_backend_it_can_import(docker_project: Path) -> None:
    """The script's MPLBACKEND names a module of the agent bundle (a zipapp in the container),
    which its PYTHONPATH makes importable (matplotlib itself is not in the test image)."""
    (docker_project / "script.py").write_text(
        "import importlib, os\nname = os.environ['MPLBACKEND'].split('//', 1)[1]\n"
        "importlib.import_module(name.rsplit('.', 1)[0] + '.display')\nprint('importable', name)\n")
    res = devloop("run", "script.py", "--profile", "docker-test", "--json", cwd=docker_project, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert outputs(events(res.stdout)) == "importable devloop_agent.mplbackend\n"
