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
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
PACKAGE = "devloop_agent"
_MAIN = b"import sys\nfrom devloop_agent.main import main\nsys.exit(main())\n"


@functools.lru_cache(maxsize=1)
def sources() -> dict[str, dict[str, bytes]]:
    """The agent's files as {folder relpath: {file name: bytes}} ("" is the top), read once
    per process: what the bundle holds, and what the unpacked copy is checked against."""
    tree: dict[str, dict[str, bytes]] = {"": {"__main__.py": _MAIN}, PACKAGE: {}}
    for path in sorted(AGENT_DIR.glob("*.py")):
        tree[PACKAGE][path.name] = path.read_bytes()
    return tree


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

        tree = sources()
        add("__main__.py", tree[""]["__main__.py"])
        for name, data in tree[PACKAGE].items():
            add(f"{PACKAGE}/{name}", data)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def sources_hash() -> str:
    """sha256 of the agent's files (names and bytes): names the unpacked copy without
    building the zip (~15 ms of deflate that the local target does not need)."""
    digest = hashlib.sha256()
    for folder, files in sorted(sources().items()):
        for name, data in sorted(files.items()):
            digest.update(f"{folder}/{name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


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


class UnsafeCache(Exception):
    """The agent cache cannot be trusted and devloop cannot make it so (another owner, a link)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


_CACHE_HINT = "remove it, or set XDG_CACHE_HOME to a folder only you can write"


def _pyc_names(files: dict[str, bytes]) -> re.Pattern:
    stems = "|".join(re.escape(n[:-3]) for n in files if n.endswith(".py"))
    # NAME.TAG.pyc (TAG like cpython-311, opt-1), or importlib's temp file while it writes one
    return re.compile(rf"^(?:{stems})\.[A-Za-z0-9_.-]+\.pyc(?:\.\d+)?$")


def _own_private_folder(path: Path) -> None:
    """`path` exists as a real folder of this user that nobody else can write (made 0700).

    A folder of ours that is too open is closed (0700); a link or someone else's folder is
    refused: what is inside may already be theirs."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeCache(f"agent cache {path} is a link or not a folder", _CACHE_HINT)
    if st.st_uid != os.geteuid():
        raise UnsafeCache(f"agent cache {path} belongs to uid {st.st_uid}, not to you "
                          f"(uid {os.geteuid()})", _CACHE_HINT)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700, follow_symlinks=False)


def _problem(dest: Path) -> str | None:
    """Why the unpacked agent at `dest` is not exactly the bundle (None: it is).

    Checks every file's bytes against the bundle in memory, that nothing else is there (a
    module next to __main__.py would shadow the stdlib), and that no entry is a link, someone
    else's or writable by others. Python's own __pycache__ folders are allowed, holding only
    compiled forms of the agent's modules."""
    uid = os.geteuid()
    expected = sources()
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        return "not a private folder of yours"
    for folder, files in expected.items():
        subdirs = {k.rpartition("/")[2] for k in expected if k and k.rpartition("/")[0] == folder}
        seen = set()
        here = dest / folder if folder else dest
        try:
            entries = list(os.scandir(here))
        except OSError as exc:
            return f"cannot list {here}: {exc.strerror}"
        for entry in entries:
            est = entry.stat(follow_symlinks=False)
            name = entry.name
            # modes inside Python's own __pycache__ follow the umask; the 0700 folders above
            # keep others out of them
            loose = est.st_mode & 0o022 and name != "__pycache__"
            if est.st_uid != uid or loose or stat.S_ISLNK(est.st_mode):
                return f"{entry.path} is a link, someone else's, or writable by others"
            if name in files and stat.S_ISREG(est.st_mode):
                try:
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError as exc:
                    return f"cannot read {entry.path}: {exc.strerror}"
                with os.fdopen(fd, "rb") as fh:
                    if fh.read(len(files[name]) + 1) != files[name]:
                        return f"{entry.path} differs from the bundle"
                seen.add(name)
            elif name in subdirs and stat.S_ISDIR(est.st_mode):
                seen.add(name)
            elif name == "__pycache__" and stat.S_ISDIR(est.st_mode):
                allowed = _pyc_names(files)
                for pyc in os.scandir(entry.path):
                    pst = pyc.stat(follow_symlinks=False)
                    if not stat.S_ISREG(pst.st_mode) or pst.st_uid != uid \
                            or not allowed.match(pyc.name):
                        return f"unexpected {pyc.path}"
            else:
                return f"unexpected {entry.path}"
        missing = (set(files) | subdirs) - seen
        if missing:
            return f"{here} lacks {sorted(missing)[0]}"
    return None


def _unpack(directory: Path, sha16: str) -> Path:
    """A fresh private copy of the bundle in a new temp folder of `directory`."""
    tmp = Path(tempfile.mkdtemp(prefix=f".agent-{sha16}.", suffix=".tmp", dir=directory))
    for folder, files in sources().items():
        if folder:
            os.makedirs(tmp / folder, mode=0o700, exist_ok=True)
        for name, data in files.items():
            fd = os.open(tmp / folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o644)
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # whatever the umask (000 gave 0666)
                fh.write(data)
    return tmp


def _discard(path: Path) -> None:
    """Move a bad folder out of the way first (a rename is atomic), then delete it."""
    aside = path.with_name(f".{path.name}.bad.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def unpacked_bundle(directory: Path) -> Path:
    """The agent unpacked into `directory/agent-<sha16>/` (sha of sources()), verified at
    every call; its path.

    The local target runs the agent from there (`python3 FOLDER MODE`): Python then keeps the
    compiled modules in __pycache__, while a zipapp's modules are compiled again at every
    start (~40 ms of every receiver and kernel start on a slow machine). Because that folder
    is code devloop runs, every call checks it against the bundle (`_problem`) and unpacks
    it again when anything differs; `directory` is made (or closed to) 0700 and must be the
    user's own real folder, else UnsafeCache."""
    sha = sources_hash()
    directory = Path(directory)
    _own_private_folder(directory)
    dest = directory / f"agent-{sha[:16]}"
    problem = _problem(dest)
    if problem is None:
        return dest
    if problem != "missing":
        _discard(dest)
    tmp = _unpack(directory, sha[:16])
    try:
        os.rename(tmp, dest)
    except OSError:  # another devloop unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    problem = _problem(dest)
    if problem is not None:
        raise UnsafeCache(f"agent cache {dest}: {problem}", _CACHE_HINT)
    return dest
