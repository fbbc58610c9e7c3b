"""The agent bundle: one reproducible zip for remote targets, the same files unpacked for the
local target (so Python keeps their compiled modules between starts), and that unpacked copy
checked against the bundle before every use (issue 21 item 7)."""

import os
import subprocess
import sys
import zipfile

import pytest

from devloop.core.agent_bundle import (
    UnsafeCache,
    bundle,
    sources,
    sources_hash,
    unpacked_bundle,
    write_bundle,
)


def test_unpacked_bundle_holds_the_zip_and_runs(tmp_path):
    folder = unpacked_bundle(tmp_path / "cache")
    with zipfile.ZipFile(write_bundle(tmp_path / "cache")) as zf:
        for name in zf.namelist():
            assert (folder / name).read_bytes() == zf.read(name), name
        assert sorted(zf.namelist()) == sorted(
            f"{d}/{n}" if d else n for d, files in sources().items() for n in files)
    assert folder.name == f"agent-{sources_hash()[:16]}"
    assert len(bundle()[1]) == 64
    out = subprocess.run([sys.executable, "-S", str(folder), "manifest", str(tmp_path / "nothing-here")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "null", out.stderr


def test_unpacked_bundle_is_made_once_and_leaves_no_temp_folders(tmp_path):
    first = unpacked_bundle(tmp_path)
    marker = first / "devloop_agent" / "__pycache__"
    marker.mkdir(exist_ok=True)  # what Python writes on the first start: kept
    assert unpacked_bundle(tmp_path) == first and marker.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_compiled_modules_python_writes_are_kept(tmp_path):
    folder = unpacked_bundle(tmp_path / "c")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(folder)!r}); "
                    "import devloop_agent.main, devloop_agent.kernel"], env=env, check=True,
                   timeout=60)
    pycs = sorted((folder / "devloop_agent" / "__pycache__").iterdir())
    assert pycs
    assert unpacked_bundle(tmp_path / "c") == folder
    assert sorted((folder / "devloop_agent" / "__pycache__").iterdir()) == pycs


def _run_kernel_file(folder, tmp_path) -> str:
    """What running the agent's kernel module from the cache prints (the tampering shows)."""
    out = subprocess.run([sys.executable, "-S", "-c",
                          f"import sys; sys.path.insert(0, {str(folder)!r}); import devloop_agent.kernel"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return out.stdout


@pytest.mark.parametrize("tamper", ["append", "replace", "extra_module", "shadow_stdlib", "symlink",
                                    "pyc_dir_junk", "missing", "mode"])
def test_a_tampered_cache_is_rebuilt_before_use(tmp_path, tamper):
    cache = tmp_path / "cache"
    folder = unpacked_bundle(cache)
    kernel = folder / "devloop_agent" / "kernel.py"
    payload = "\nprint('PWNED')\n"
    if tamper == "append":  # the case: code appended to the cached kernel.py
        with open(kernel, "a") as fh:
            fh.write(payload)
        assert "PWNED" in _run_kernel_file(folder, tmp_path)
    elif tamper == "replace":
        kernel.write_text(payload)
    elif tamper == "extra_module":
        (folder / "devloop_agent" / "evil.py").write_text(payload)
    elif tamper == "shadow_stdlib":  # next to __main__.py, sys.path[0] of `python3 FOLDER`
        (folder / "json.py").write_text(payload)
    elif tamper == "symlink":
        outside = tmp_path / "outside.py"
        outside.write_bytes(kernel.read_bytes())
        kernel.unlink()
        kernel.symlink_to(outside)
    elif tamper == "pyc_dir_junk":
        (folder / "devloop_agent" / "__pycache__").mkdir()
        (folder / "devloop_agent" / "__pycache__" / "sitecustomize.cpython-311.pyc").write_bytes(b"x")
    elif tamper == "missing":
        (folder / "devloop_agent" / "wire.py").unlink()
    elif tamper == "mode":
        os.chmod(kernel, 0o666)
    again = unpacked_bundle(cache)
    assert again == folder
    for rel, files in sources().items():
        for name, data in files.items():
            path = again / rel / name
            assert not path.is_symlink() and path.read_bytes() == data
    assert not (again / "json.py").exists() and not (again / "devloop_agent" / "evil.py").exists()
    assert "PWNED" not in _run_kernel_file(again, tmp_path)
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # the bad copy is gone


def test_cache_folder_is_private_even_under_umask_000(tmp_path):
    old = os.umask(0)
    try:
        folder = unpacked_bundle(tmp_path / "xdg" / "devloop")
    finally:
        os.umask(old)
    assert (tmp_path / "xdg" / "devloop").stat().st_mode & 0o777 == 0o700
    assert folder.stat().st_mode & 0o077 == 0
    for path in folder.rglob("*"):
        assert path.stat().st_mode & 0o022 == 0, path


def test_a_loose_cache_folder_of_ours_is_closed(tmp_path):
    cache = tmp_path / "devloop"
    cache.mkdir()
    os.chmod(cache, 0o777)
    unpacked_bundle(cache)
    assert cache.stat().st_mode & 0o777 == 0o700


def test_a_symlinked_cache_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "devloop").symlink_to(real)
    with pytest.raises(UnsafeCache, match="is a link"):
        unpacked_bundle(tmp_path / "devloop")
    assert list(real.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder someone else owns needs root")
def test_someone_elses_cache_folder_is_refused(tmp_path):
    cache = tmp_path / "devloop"
    cache.mkdir(mode=0o755)
    os.chown(cache, 12345, 12345)  # another user pre-created the shared cache folder
    with pytest.raises(UnsafeCache, match="belongs to uid 12345"):
        unpacked_bundle(cache)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder someone else owns needs root")
def test_an_agent_folder_planted_by_someone_else_is_replaced(tmp_path):
    cache = tmp_path / "devloop"
    folder = unpacked_bundle(cache)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, 12345, 12345, follow_symlinks=False)
    assert unpacked_bundle(cache) == folder
    assert all(p.stat().st_uid == os.geteuid() for p in [folder, *folder.rglob("*")])
