"""The agent bundle: one reproducible zip for remote targets, the same files unpacked for the
local target (so Python keeps their compiled modules between starts)."""

import subprocess
import sys
import zipfile

from devloop.core.agent_bundle import bundle, unpacked_bundle, write_bundle


def test_unpacked_bundle_holds_the_zip_and_runs(tmp_path):
    folder = unpacked_bundle(tmp_path / "cache")
    with zipfile.ZipFile(write_bundle(tmp_path / "cache")) as zf:
        for name in zf.namelist():
            assert (folder / name).read_bytes() == zf.read(name), name
    assert folder.name == f"agent-{bundle()[1][:16]}"
    out = subprocess.run([sys.executable, "-S", str(folder), "manifest", str(tmp_path / "nothing-here")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "null", out.stderr


def test_unpacked_bundle_is_made_once_and_leaves_no_temp_folders(tmp_path):
    first = unpacked_bundle(tmp_path)
    marker = first / "devloop_agent" / "__pycache__"
    marker.mkdir(exist_ok=True)  # what Python writes on the first start: kept
    assert unpacked_bundle(tmp_path) == first and marker.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]
