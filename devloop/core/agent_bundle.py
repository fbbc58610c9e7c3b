"""Pack `devloop/agent/*.py` into one zipapp the targets copy in by content hash.

One file on the remote keeps copying cheap and atomic, while the agent's source stays in small
modules here. The zip is byte-for-byte reproducible (fixed timestamps, sorted names), so its
sha256 names it: a target that already has `agent-<sha>.pyz` copies nothing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
PACKAGE = "devloop_agent"
_MAIN = b"import sys\nfrom devloop_agent.main import main\nsys.exit(main())\n"


@functools.lru_cache(maxsize=1)
def bundle() -> tuple[bytes, str]:
    """(zip bytes, sha256 hex) of the agent bundle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)

        add("__main__.py", _MAIN)
        for path in sorted(AGENT_DIR.glob("*.py")):
            add(f"{PACKAGE}/{path.name}", path.read_bytes())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def bundle_name() -> str:
    """File name for the bundle on a target: agent-<first 16 hex of sha256>.pyz."""
    return f"agent-{bundle()[1][:16]}.pyz"


def write_bundle(directory: Path) -> Path:
    """Write the bundle into `directory` (atomically) unless it is there already; its path."""
    data, _ = bundle()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / bundle_name()
    if not dest.exists():
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return dest


def unpacked_bundle(directory: Path) -> Path:
    """The bundle unpacked into `directory/agent-<sha16>/` (made once, atomically); its path.

    The local target runs the agent from there (`python3 FOLDER MODE`): Python then keeps the
    compiled modules in __pycache__, while a zipapp's modules are compiled again at every
    start (~40 ms of every receiver and kernel start on a slow machine)."""
    data, sha = bundle()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"agent-{sha[:16]}"
    if (dest / "__main__.py").is_file():
        return dest
    tmp = directory / f".agent-{sha[:16]}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp)
    try:
        os.rename(tmp, dest)
    except OSError:  # another devloop unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "__main__.py").is_file():
            raise
    return dest
