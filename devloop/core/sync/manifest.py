"""What the project tree holds: path -> (size, mtime, mode, content hash, link target).

`Scanner` walks the tree with the ignore rules and keeps a stat cache (size, mtime_ns, inode,
mode) so a rescan hashes only files whose stat changed; `update(paths)` rescans only the paths
the watcher named. The cache can be kept on disk (`.devloop/statcache.json`) so a fresh
`devloop sync` does not hash the whole project again.

Per profile, the manifest devloop last synced is kept under `.devloop/manifests/<profile>.json`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, NamedTuple

from devloop.core.sync.ignore import IGNORE_FILES, IgnoreRules
from devloop.core.targets.base import TargetError

__all__ = [
    "Entry", "Manifest", "IgnoreRules", "Scanner", "hash_file", "load_local_manifest",
    "save_local_manifest", "manifest_from_json", "READ_FLAGS", "UnreadablePath",
]

CHUNK = 1 << 20
# a scan with at least this many files to hash hashes them on threads (hashlib and file reads
# release the GIL): what a first scan or a first `devloop sync` of a big tree does. Only with 4+
# CPUs: on 2 vCPUs threads measured slower than one (the sync's other process needs a CPU too).
PARALLEL_HASH_MIN = 64
HASH_THREADS = min(8, os.cpu_count() or 1)
CACHE_VERSION = 2  # statcache.json: {rel: [size, mtime_ns, inode, st_mode, [Entry fields]]}


class Entry(NamedTuple):
    """One synced path. Files: mode is 0o755 or 0o644 (only the executable bit travels, as in
    git). Symlinks: `link` is the target, `sha256` is empty, mode 0o777. A named tuple, not a
    dataclass: a 100,000-file stat cache is loaded in a fraction of the time."""

    size: int
    mtime_ns: int
    mode: int
    sha256: str
    link: str | None = None


Manifest = dict[str, Entry]


READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)  # how sync opens files it reads
_buffers = threading.local()  # one read buffer per hashing thread, not one allocation per file


# a path that went away (or whose folder became a file) while it was walked: the watcher's next
# event names it again. Any other error (EACCES, EIO) makes the path unreadable: an error.
_VANISHED = (errno.ENOENT, errno.ENOTDIR)


class UnreadablePath(TargetError):
    """A file or folder of the project that cannot be read (permissions, I/O error). Never read
    as empty or absent: that would send an empty file, or delete the target's copies. A
    TargetError, so every front end shows it as one line with its fix."""

    def __init__(self, path: str, exc: OSError) -> None:
        super().__init__(f"cannot read {path}: {exc.strerror or exc} (devloop never syncs it as empty or gone)",
                         hint="make it readable (chmod u+r, or u+rx for a folder), or exclude it in .devloopignore")
        self.path = path


def _unreadable_or_vanished(path: str, exc: OSError) -> None:
    """Raise UnreadablePath unless `exc` says the path went away meanwhile."""
    if exc.errno not in _VANISHED:
        raise UnreadablePath(path, exc) from None


def hash_file(path: str) -> str:
    """sha256 of a file, read into a reused buffer (hashlib.file_digest allocates 256 KiB per
    call: for 10,000 small files that allocation costs more than the hashing)."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(CHUNK)
    view = memoryview(buf)
    h = hashlib.sha256()
    fd = os.open(path, READ_FLAGS)
    try:
        while True:
            n = os.readv(fd, (buf,))
            if not n:
                break
            h.update(view[:n])
    finally:
        os.close(fd)
    return h.hexdigest()


def file_mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644


def manifest_from_json(files: dict) -> Manifest:
    """{rel: [size, mtime_ns, mode, sha256, link]} -> Manifest. Entry(*v): the fields are in
    that order; a record of the wrong shape raises TypeError (callers treat it as unreadable)."""
    return {rel: Entry(*v) for rel, v in files.items()}


def _hash_or_none(path: str) -> str | None:
    """The file's hash; None when it went away; UnreadablePath when it cannot be read."""
    try:
        return hash_file(path)
    except OSError as exc:
        _unreadable_or_vanished(path, exc)
        return None


# -- per-profile record of what was last synced ------------------------------------------------

def _manifest_path(root: Path | str, profile: str) -> Path:
    return Path(root) / ".devloop" / "manifests" / f"{profile}.json"


def _write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # json.dumps, not json.dump: dump() to a file runs the pure-Python encoder (10x slower)
    text = json.dumps(data, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def load_local_manifest(root: Path | str, profile: str) -> Manifest | None:
    """The manifest last synced to `profile` from this project, or None (never synced/unreadable)."""
    try:
        with open(_manifest_path(root, profile), encoding="utf-8") as f:
            data = json.load(f)
        return manifest_from_json(data["files"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def save_local_manifest(root: Path | str, profile: str, manifest: Manifest) -> None:
    # an Entry is a tuple: json writes it as the [size, mtime_ns, mode, sha256, link] list as is
    _write_json_atomic(_manifest_path(root, profile), {"version": 1, "files": manifest})


# -- the scanner -------------------------------------------------------------------------------

class Scanner:
    """Walks `root` with `rules`; unchanged files (same size, mtime_ns, inode, mode) keep their
    previous Entry, so only changed files are read and hashed."""

    def __init__(self, root: Path | str, rules: IgnoreRules, cache_file: Path | str | None = None) -> None:
        self.root = str(Path(root).resolve())
        self.rules = rules
        self.cache_file = Path(cache_file) if cache_file else None
        # relpath -> (size, mtime_ns, inode, st_mode, Entry)
        self._stat: dict[str, tuple[int, int, int, int, Entry]] = {}
        self._manifest: Manifest = {}
        self._ignore_files: dict[str, tuple[int, int]] = {}
        self.hashed = 0  # files hashed by the last scan/update (for tests and -v)
        # files scan(hash_new=False) listed without a hash: rel -> (path, stat at the scan)
        self._unhashed: dict[str, tuple[str, os.stat_result]] = {}
        self._cache_dirty = True  # the stat cache differs from what is on disk: save_cache writes
        # the rules generation every path in the stat cache was found not excluded under (set by
        # a full scan): while the rules are unchanged, a cache hit needs no ignore decision
        self._decided_gen: int | None = None
        if self.cache_file is not None:
            self._load_cache()

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    # stat cache on disk ------------------------------------------------------------------------
    def _load_cache(self) -> None:
        try:
            with open(self.cache_file, encoding="utf-8") as f:  # type: ignore[arg-type]
                data = json.load(f)
            if data.get("root") != self.root or data.get("version") != CACHE_VERSION:
                return
            cache = self._stat
            for rel, (size, mtime, ino, st_mode, entry) in data["files"].items():
                cache[rel] = (size, mtime, ino, st_mode, Entry(*entry))
            ignore_files = data.get("ignore_files")
            if isinstance(ignore_files, dict) and data.get("rules") == self.rules.fingerprint():
                # every cached path was found not excluded under these rules: the first scan
                # trusts that (no ignore decision per file) and rescans if an ignore file differs
                self._ignore_files = {rel: (int(v[0]), int(v[1])) for rel, v in ignore_files.items()}
                self.rules.remember(data.get("decisions") or ())
                self._decided_gen = self.rules.generation
                self._cache_dirty = False
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            self._stat.clear()
            self._ignore_files = {}
            self._decided_gen = None
            self.rules.reload()

    def save_cache(self) -> None:
        """Write the stat cache, unless nothing in it changed since it was loaded or saved."""
        if self.cache_file is None or not self._cache_dirty:
            return
        # the values are tuples (the Entry nested in each): json writes them as lists as they are
        data = {"version": CACHE_VERSION, "root": self.root, "files": self._stat}
        if self._decided_gen == self.rules.generation:
            data["rules"] = self.rules.fingerprint()
            data["ignore_files"] = {rel: list(v) for rel, v in self._ignore_files.items()}
            data["decisions"] = self.rules.remembered()
        _write_json_atomic(self.cache_file, data)
        self._cache_dirty = False

    # one path ----------------------------------------------------------------------------------
    def _entry(self, rel: str, path: str, st: os.stat_result) -> Entry | None:
        st_mode = st.st_mode
        cached = self._stat.get(rel)
        if (cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime_ns
                and cached[2] == st.st_ino and cached[3] == st_mode):
            return cached[4]
        if stat.S_ISLNK(st_mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # (EINVAL: no longer a link; the next event says what)
                    _unreadable_or_vanished(path, exc)
                return None
            entry = Entry(len(target), st.st_mtime_ns, 0o777, "", target)
        elif stat.S_ISREG(st_mode):
            try:
                digest = hash_file(path)
            except OSError as exc:  # vanished: the next event names it again; unreadable: an error
                _unreadable_or_vanished(path, exc)
                return None
            self.hashed += 1
            if cached is not None and cached[4].sha256 == digest and cached[4].mode == file_mode(st_mode) \
                    and cached[4].size == st.st_size and cached[4].mtime_ns == st.st_mtime_ns:
                entry = cached[4]
            else:
                entry = Entry(st.st_size, st.st_mtime_ns, file_mode(st_mode), digest, None)
        else:  # fifo, socket, device: not synced
            return None
        self._stat[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, st_mode, entry)
        self._cache_dirty = True
        return entry

    # walks -------------------------------------------------------------------------------------
    def _walk(self, top_rel: str, out: Manifest, seen_ignore: dict[str, tuple[int, int]],
              pending: list | None = None) -> None:
        """Walk from `top_rel` into `out`. With `pending`, files to hash are listed there as
        (rel, path, stat) and left out of `out` (the caller hashes them in parallel)."""
        # the hot loop of every rescan: locals only, cached decisions and stats looked up inline
        rules = self.rules
        decisions = rules._decisions
        decide = rules._decide
        note_listing = rules.note_listing
        levels = rules._levels
        cache = self._stat
        entry_for = self._entry
        ignore_names = IGNORE_FILES
        is_reg = stat.S_ISREG
        trusted = self._decided_gen == rules.generation
        stack = [top_rel]
        root = self.root
        while stack:
            dir_rel = stack.pop()
            prefix = dir_rel + "/" if dir_rel else ""
            try:
                with os.scandir(os.path.join(root, dir_rel) if dir_rel else root) as it:
                    entries = list(it)
            except OSError as exc:  # an unreadable folder is not an empty one: its files stay
                _unreadable_or_vanished(os.path.join(root, dir_rel) if dir_rel else root, exc)
                continue
            if dir_rel not in levels:  # (known after the first walk: no list built again)
                note_listing(dir_rel, [de.name for de in entries])
            for de in entries:
                name = de.name
                rel = prefix + name
                try:
                    if de.is_dir(follow_symlinks=False):
                        ignored = decisions.get((rel, True))
                        if ignored is None:
                            ignored = decide(rel, True)
                        if not ignored:
                            stack.append(rel)
                        continue
                    c = cache.get(rel)
                    if c is None or not trusted:
                        ignored = decisions.get((rel, False))
                        if ignored is None:
                            ignored = decide(rel, False)
                        if ignored:
                            continue
                    st = de.stat(follow_symlinks=False)
                except OSError as exc:
                    _unreadable_or_vanished(de.path, exc)
                    continue
                if (c is not None and c[1] == st.st_mtime_ns and c[0] == st.st_size
                        and c[2] == st.st_ino and c[3] == st.st_mode):
                    out[rel] = c[4]
                elif pending is not None and is_reg(st.st_mode):
                    pending.append((rel, de.path, st))
                else:
                    entry = entry_for(rel, de.path, st)
                    if entry is not None:
                        out[rel] = entry
                if name in ignore_names:
                    seen_ignore[rel] = (st.st_size, st.st_mtime_ns)

    def _hash_pending(self, pending: list, out: Manifest) -> None:
        """Hash the files a walk listed: on threads when there are many (first scans)."""
        if len(pending) >= PARALLEL_HASH_MIN and HASH_THREADS >= 4:
            with ThreadPoolExecutor(HASH_THREADS) as pool:
                digests = list(pool.map(_hash_or_none, [p for _, p, _ in pending], chunksize=16))
        else:
            digests = [_hash_or_none(p) for _, p, _ in pending]
        for (rel, _path, st), digest in zip(pending, digests):
            if digest is None:  # vanished: the next event names it again
                continue
            self.hashed += 1
            st_mode = st.st_mode
            mode = file_mode(st_mode)
            cached = self._stat.get(rel)
            if cached is not None and cached[4].sha256 == digest and cached[4].mode == mode \
                    and cached[4].size == st.st_size and cached[4].mtime_ns == st.st_mtime_ns:
                entry = cached[4]
            else:
                entry = Entry(st.st_size, st.st_mtime_ns, mode, digest, None)
            self._stat[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, st_mode, entry)
            self._cache_dirty = True
            out[rel] = entry

    def scan(self, hash_new: bool = True) -> Manifest:
        """A full walk. Rescans once more if an ignore file changed since the last walk.

        `hash_new=False` leaves new and changed files unhashed (sha256 ""): a first sync sends
        them anyway and the transport hashes them while it reads them, so a big tree is read
        once, not twice. Call `hash_needed(remote)` before planning against a remote that may
        hold some of them, and `adopt_hashes(manifest)` after the sync."""
        self.hashed = 0
        self._unhashed = {}
        decided = len(self.rules._decisions)
        for _ in range(2):
            trusted = self._decided_gen == self.rules.generation
            out: Manifest = {}
            seen: dict[str, tuple[int, int]] = {}
            pending: list = []
            self._walk("", out, seen, pending)
            changed = seen != self._ignore_files
            self._ignore_files = seen
            if changed and (self._manifest or trusted):
                # decisions (made, or trusted from the cache) may follow old ignore files
                self.rules.reload()
                self._manifest = {}
                continue
            break
        if hash_new:
            self._hash_pending(pending, out)
        else:
            for rel, path, st in pending:
                out[rel] = Entry(st.st_size, st.st_mtime_ns, file_mode(st.st_mode), "", None)
                self._unhashed[rel] = (path, st)
        self._manifest = out
        for rel in [r for r in self._stat if r not in out]:
            del self._stat[rel]
            self._cache_dirty = True
        if changed or self._decided_gen != self.rules.generation or len(self.rules._decisions) != decided:
            self._cache_dirty = True  # (new decisions: kept with the cache, see IgnoreRules.remembered)
        self._decided_gen = self.rules.generation
        return out

    @property
    def unhashed(self) -> int:
        return len(self._unhashed)

    @property
    def unhashed_bytes(self) -> int:
        return sum(st.st_size for _path, st in self._unhashed.values())

    def hash_unhashed(self) -> int:
        """Hash every file scan(hash_new=False) left unhashed (a few changed files: cheaper
        now, and the stat cache is complete at once). Returns how many."""
        return self._hash_unhashed(list(self._unhashed))

    def hash_needed(self, remote: Manifest | None) -> int:
        """Hash the unhashed files the remote may already hold (same path, same size): only for
        those does the hash decide whether to send. The rest are sent anyway (and hashed on the
        way by the transport). Returns how many were hashed."""
        if not self._unhashed:
            return 0
        remote = remote or {}
        return self._hash_unhashed([
            rel for rel, (_path, st) in self._unhashed.items()
            if (there := remote.get(rel)) is not None and there.link is None and there.size == st.st_size])

    def _hash_unhashed(self, rels: list[str]) -> int:
        """Hash these unhashed files into the manifest and the stat cache."""
        todo = [(rel, *self._unhashed.pop(rel)) for rel in rels]
        if todo:
            self._hash_pending(todo, self._manifest)
        return len(todo)

    def adopt_hashes(self, manifest: Manifest) -> None:
        """After a sync: hashes the transport computed while sending go into the stat cache
        (only where the file was sent as it was scanned; the others are hashed next scan)."""
        for rel, (_path, st) in self._unhashed.items():
            entry = manifest.get(rel)
            if (entry is not None and entry.sha256 and entry.size == st.st_size
                    and entry.mtime_ns == st.st_mtime_ns):
                self._stat[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, entry)
                self._cache_dirty = True
                if rel in self._manifest:
                    self._manifest[rel] = entry
        self._unhashed = {}

    def update(self, paths: Iterable[str]) -> Manifest:
        """Rescan only `paths` (posix relpaths the watcher named): a file changed, appeared or
        went away, a folder appeared (walked) or went away (its entries dropped). A changed
        ignore file means a full rescan."""
        self.hashed = 0
        paths = set(paths)
        if any(IgnoreRules.is_ignore_file(p) for p in paths):
            self.rules.reload()
            return self.scan()
        out = dict(self._manifest)
        for rel in sorted(paths):
            rel = rel.strip("/")
            if not rel:
                continue
            self._unhashed.pop(rel, None)
            path = os.path.join(self.root, rel)
            try:
                st = os.lstat(path)
            except OSError as exc:
                _unreadable_or_vanished(path, exc)
                st = None
            is_dir = st is not None and stat.S_ISDIR(st.st_mode)
            if st is None or self.rules.matches(rel, is_dir) or is_dir:
                # gone, excluded, or a folder: drop what was known under it
                out.pop(rel, None)
                if self._stat.pop(rel, None) is not None:
                    self._cache_dirty = True
                prefix = rel + "/"
                for old in [k for k in out if k.startswith(prefix)]:
                    del out[old]
                if st is not None and is_dir and not self.rules.matches(rel, True):
                    self._walk(rel, out, {})
                continue
            entry = self._entry(rel, path, st)
            if entry is None:
                out.pop(rel, None)
            else:
                out[rel] = entry
        self._manifest = out
        return out
