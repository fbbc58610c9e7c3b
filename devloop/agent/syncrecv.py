"""The receiving end of a sync, inside the target (stdlib only, Python 3.8+).

`receive ROOT` reads a tar stream on stdin whose first member is a control JSON:
    {"v": 1, "full": bool, "deletes": [REL...], "chmod": {REL: MODE},
     "entries": {REL: [size, mtime_ns, mode, sha256, link]}, "keep": [REL...]}
`entries` is the complete new manifest when `full` (then `keep` names the entries not sent),
else only the paths sent or re-moded. Every other member is a file or symlink named in
`entries`, then optionally `.devloop/hashes.json` ({REL: sha256} for entries sent with "") and
`.devloop/unsent.json` ([REL...]: files that changed or shrank while they were read, so what
arrived is not what the record would claim; they stay unverified and are sent again).
Each file is written to a temp name in its own folder and renamed over the old one, so a running
cell never reads half a file. Only paths devloop itself synced (ROOT/.devloop/manifest.json) are
ever deleted or re-moded: what a run wrote stays.

Nothing is ever done through a symlink: the workdir is opened once and every folder below it one
component at a time with O_NOFOLLOW relative to its parent (`Tree`); each create, rename, chmod,
unlink and rmdir names its file relative to that folder's fd. A folder the target replaced by a
symlink (data moved to a bigger disk) is a leaf: sync neither enters nor deletes through it, and
the answer warns once per such folder. The whole plan is checked before anything is done, so a
refusal (absolute path, `..`, a link that leaves the workdir even through other links, a file in
the way) leaves the target as it was. devloop's own state (ROOT/.devloop) must be a real folder
owned by this user; its files are opened with O_NOFOLLOW, temp files with O_EXCL and a random
name. While files are written, `.devloop/inflight.<pid>` lists the folders that get temp files,
so the next receiver removes what a killed one left (only names of that pid's exact pattern).

One JSON line answers: {"ok": true, "files": N, "bytes": N, "deleted": N[, "warnings": [TEXT]]}
or {"ok": false, "error": TEXT}.

`manifest ROOT` prints the stored manifest as {"version": 1, "files": {REL: [size, mtime_ns,
mode, sha256, link]}}, keeping only paths whose file on disk still matches what was written
(so a file changed or lost remotely is sent again), or `null` when nothing was synced there.
The check is a stat per file against the (size, mtime_ns, mode) recorded when it was written,
never a re-hash. `receive ROOT --serve` answers the same line for a frame header of
MANIFEST_REQUEST instead of a sync, so `devloop sync` needs one process start, not two.

The stored manifest is a base file plus an append-only journal, so a one-file sync appends one
line instead of rewriting the record of a 100,000-file tree.
"""
import errno
import io
import json
import os
import re
import stat
import sys

from .wire import CONTROL_NAME, HASHES_NAME, MANIFEST_REQUEST, STATE_DIR, UNSENT_NAME  # noqa: F401

BASE = "manifest.json"
JOURNAL = "manifest.log"
INFLIGHT = "inflight."  # + pid: the folders that receiver writes temp files into
TMP_PREFIX = ".devloop-tmp-"  # + pid-counter: a file or link being written
CHUNK = 1 << 20
COMPACT_JOURNAL_BYTES = 1 << 20
MAX_DIR_FDS = 256  # folder fds kept open at once (a big tree has more folders than fds allowed)
MAX_LINK_HOPS = 40  # as the kernel's own limit on links followed in one path

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC
_STALE_BASE = re.compile(r"manifest\.json\.(\d+)(?:-[0-9a-f]{16})?\.tmp\Z")
_STALE_INFLIGHT = re.compile(r"inflight\.(\d+)\Z")


class Refused(Exception):
    """The stream asks for something unsafe or impossible; the message says what and why."""


class Leaf(Exception):
    """A folder on the way is a symlink on the target: sync does not enter it."""

    def __init__(self, rel):
        Exception.__init__(self, rel)
        self.rel = rel


class Blocked(Exception):
    """A folder on the way is a file (or another non-folder) on the target."""

    def __init__(self, rel):
        Exception.__init__(self, rel)
        self.rel = rel


# -- the workdir, one folder at a time ------------------------------------------------------------

class Tree:
    """The workdir opened once; a folder below it is reached one component at a time, each
    opened with O_NOFOLLOW|O_DIRECTORY relative to its parent, so no path operation ever passes
    through a symlink (one the target made, or one raced in while the sync runs)."""

    def __init__(self, root):
        self.root = root
        self.root_fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        self._fds = {"": self.root_fd}

    def close(self):
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}

    def dir_fd(self, dir_rel, create=False):
        """The fd of folder `dir_rel` ("" is ROOT); None when it does not exist (and not
        `create`). Raises Leaf for a symlink on the way, Blocked for a non-folder on the way."""
        fd = self._fds.get(dir_rel)
        if fd is not None:
            return fd
        fds = self._fds
        if len(fds) > MAX_DIR_FDS:
            for rel, held in fds.items():
                if rel:
                    os.close(held)
            fds = self._fds = {"": self.root_fd}
        parts = dir_rel.split("/")
        have = len(parts) - 1
        while have and "/".join(parts[:have]) not in fds:
            have -= 1
        fd = fds["/".join(parts[:have])] if have else self.root_fd
        for i in range(have, len(parts)):
            name = parts[i]
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened (and checked) below
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    raise self._why(fd, name, "/".join(parts[:i + 1]))
            except OSError:
                raise self._why(fd, name, "/".join(parts[:i + 1]))
            fds["/".join(parts[:i + 1])] = child
            fd = child
        return fd

    @staticmethod
    def _why(parent_fd, name, rel):
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError as exc:
            return Refused("cannot open folder %r on the target: %s" % (rel, exc.strerror or exc))
        if stat.S_ISLNK(st.st_mode):
            return Leaf(rel)
        return Blocked(rel)

    def forget(self, dir_rel):
        """`dir_rel` was removed: close its fd and those below it."""
        prefix = dir_rel + "/"
        for rel in [r for r in self._fds if r == dir_rel or r.startswith(prefix)]:
            os.close(self._fds.pop(rel))

    def lstat(self, rel):
        """lstat of `rel` without following anything on the way; None when it is not there."""
        dir_rel, _, name = rel.rpartition("/")
        try:
            fd = self.dir_fd(dir_rel)
            if fd is None:
                return None
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (OSError, Leaf, Blocked, Refused):
            return None

    def readlink(self, rel):
        """The target of the symlink at `rel` (nothing on the way followed), else None."""
        dir_rel, _, name = rel.rpartition("/")
        try:
            fd = self.dir_fd(dir_rel)
            if fd is None:
                return None
            return os.readlink(name, dir_fd=fd)
        except (OSError, Leaf, Blocked, Refused):
            return None


# -- devloop's own state on the target ------------------------------------------------------------

class State:
    """ROOT/.devloop: verified to be a real folder (not a symlink) owned by this user, created
    0700; the record's files are opened relative to it with O_NOFOLLOW."""

    def __init__(self, tree, create):
        self.tree = tree
        self.path = os.path.join(tree.root, STATE_DIR)
        self.fd = None
        try:
            self.fd = os.open(STATE_DIR, _DIR_FLAGS, dir_fd=tree.root_fd)
        except FileNotFoundError:
            if not create:
                return
            try:
                os.mkdir(STATE_DIR, 0o700, dir_fd=tree.root_fd)
            except FileExistsError:
                pass
            try:
                self.fd = os.open(STATE_DIR, _DIR_FLAGS, dir_fd=tree.root_fd)
            except OSError:
                raise self._unsafe()
        except OSError:
            raise self._unsafe()
        st = os.fstat(self.fd)
        if st.st_uid != os.geteuid():
            os.close(self.fd)
            self.fd = None
            raise Refused(
                "refused: %s on the target belongs to uid %d, not to this user (uid %d): devloop keeps "
                "its record only in a folder of its own -- fix: remove it (or chown it)"
                % (self.path, st.st_uid, os.geteuid()))

    def _unsafe(self):
        try:
            st = os.stat(STATE_DIR, dir_fd=self.tree.root_fd, follow_symlinks=False)
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        except OSError as exc:
            return Refused("cannot open %s on the target: %s" % (self.path, exc.strerror or exc))
        return Refused("refused: %s on the target is %s: devloop never writes its record through "
                       "one -- fix: remove it" % (self.path, what))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def check_files(self):
        """The record's files, where they exist, are plain files (never written through a link)."""
        for name in (BASE, JOURNAL):
            try:
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Refused(
                    "refused: %s/%s on the target is %s: devloop never writes its record through "
                    "one -- fix: remove it" % (self.path, name,
                                               "a symlink" if stat.S_ISLNK(st.st_mode) else "not a file"))

    def _open_read(self, name):
        fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        return io.open(fd, "r", encoding="utf-8")

    def load(self):
        """{rel: [size, mtime_ns, mode, sha256, link, remote_size, remote_mtime_ns]} or None."""
        if self.fd is None:
            return None
        try:
            with self._open_read(BASE) as f:
                files = json.load(f)["files"]
        except (OSError, ValueError, KeyError, TypeError):
            files = None
        try:
            with self._open_read(JOURNAL) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # a torn last line: what came before it is good
                    if files is None:
                        files = {}
                    for rel in rec.get("del", ()):
                        files.pop(rel, None)
                    files.update(rec.get("set", {}))
        except OSError:
            pass
        return files

    def write_base(self, files):
        # a random temp name, O_EXCL|O_NOFOLLOW: nothing planted at a predictable name is written
        tmp = "%s.%d-%s.tmp" % (BASE, os.getpid(), os.urandom(8).hex())
        # dumps, not dump: dump() to a file runs the pure-Python encoder (10x slower)
        text = json.dumps({"version": 1, "files": files}, separators=(",", ":"))
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o600, dir_fd=self.fd)
            try:
                with io.open(fd, "w", encoding="utf-8", closefd=False) as f:
                    f.write(text)
            finally:
                os.close(fd)
            os.replace(tmp, BASE, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as exc:
            _unlink_quiet(tmp, self.fd)
            raise Refused(_write_failed(os.path.join(self.path, BASE), exc))
        _unlink_quiet(JOURNAL, self.fd)

    def append_journal(self, sets, dels):
        line = json.dumps({"set": sets, "del": dels}, separators=(",", ":")) + "\n"
        try:
            fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC,
                         0o600, dir_fd=self.fd)
            try:
                data = line.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
                return os.fstat(fd).st_size
            finally:
                os.close(fd)
        except OSError as exc:
            raise Refused(_write_failed(os.path.join(self.path, JOURNAL), exc))

    # temp files a killed receiver left ---------------------------------------------------------
    def begin_writes(self, dirs):
        """Note the folders this receiver writes temp files into (removed by end_writes)."""
        name = INFLIGHT + str(os.getpid())
        data = json.dumps(sorted(dirs), separators=(",", ":")).encode("utf-8")
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC,
                         0o600, dir_fd=self.fd)
            try:
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
        except OSError as exc:
            raise Refused(_write_failed(os.path.join(self.path, name), exc))

    def end_writes(self):
        _unlink_quiet(INFLIGHT + str(os.getpid()), self.fd)

    def remove_stale(self):
        """Remove what receivers that are gone left: their temp files in the folders their
        inflight note names (only `.devloop-tmp-<that pid>-<n>`), and record temp files."""
        try:
            names = os.listdir(self.fd)
        except OSError:
            return
        for name in names:
            m = _STALE_INFLIGHT.match(name)
            if m and not _alive(int(m.group(1))):
                self._remove_temps_of(name, m.group(1))
                _unlink_quiet(name, self.fd)
                continue
            m = _STALE_BASE.match(name)
            if m and not _alive(int(m.group(1))):
                _unlink_quiet(name, self.fd)

    def _remove_temps_of(self, note, pid):
        try:
            with self._open_read(note) as f:
                dirs = json.load(f)
        except (OSError, ValueError):
            return
        if not isinstance(dirs, list):
            return
        pattern = re.compile(re.escape(TMP_PREFIX + pid) + r"-\d+\Z")
        for dir_rel in dirs:
            if not isinstance(dir_rel, str):
                continue
            try:
                if dir_rel:
                    check_relpath(dir_rel)
                fd = self.tree.dir_fd(dir_rel)
                if fd is None:
                    continue
                for name in os.listdir(fd):
                    if pattern.match(name):
                        _unlink_quiet(name, fd)
            except (Refused, Leaf, Blocked, OSError):
                continue


def _alive(pid):
    """Is process `pid` running? Our own pid found in a note means a process before us had it."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # (EPERM: someone else's)
    return True


def _write_failed(path, exc):
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return "the target's disk is full: cannot write %s -- fix: free space on the target" % path
    return "cannot write %s on the target: %s" % (path, exc.strerror or exc)


def _open_state(root, create):
    tree = Tree(root)
    try:
        return tree, State(tree, create)
    except BaseException:
        tree.close()
        raise


def load_stored(root):
    """The stored record of ROOT (see State.load), or None."""
    root = os.path.realpath(root)
    try:
        tree, state = _open_state(root, create=False)
    except (OSError, Refused):
        return None
    try:
        return state.load()
    finally:
        state.close()
        tree.close()


def _link_verified(path, link):
    """Is the symlink devloop wrote at `path` still there, pointing where it did?"""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode) and os.readlink(path) == link
    except OSError:
        return False


# -- path safety ------------------------------------------------------------------------------

def check_relpath(rel):
    # the common case first, cheaply: no component starts with "." (so no "..", ".", or
    # .devloop), none is empty, not absolute, no NUL, no drive letter
    if (isinstance(rel, str) and rel and "/." not in "/" + rel and "//" not in rel
            and rel[0] != "/" and rel[-1] != "/" and "\x00" not in rel and rel[1:2] != ":"):
        return
    if not isinstance(rel, str) or not rel:
        raise Refused("refused: empty or non-text path in the sync stream")
    if "\x00" in rel:
        raise Refused("refused: path with a NUL byte in the sync stream")
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise Refused("refused: absolute path %r in the sync stream (only paths inside the workdir are written)" % rel)
    parts = rel.split("/")
    if ".." in parts:
        raise Refused("refused: path %r contains '..' (it would leave the workdir)" % rel)
    if any(p in ("", ".") for p in parts):
        raise Refused("refused: path %r is not a clean relative path" % rel)
    if parts[0] == STATE_DIR:
        raise Refused("refused: path %r is inside devloop's own state folder %s/" % (rel, STATE_DIR))


def check_link(rel, target):
    if not isinstance(target, str) or not target or "\x00" in target:
        raise Refused("refused: symlink %r has an empty or invalid target" % rel)
    if target.startswith("/"):
        raise Refused(
            "refused: symlink %r -> %r is absolute, so it leaves the workdir; "
            "make it relative or add it to .devloopignore" % (rel, target))
    depth = len(rel.split("/")) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise Refused(
                    "refused: symlink %r -> %r leaves the workdir; "
                    "add it to .devloopignore or [sync].exclude" % (rel, target))
        elif part not in ("", "."):
            depth += 1


def check_link_chain(rel, target, link_at):
    """Follow the symlink `rel` -> `target` lexically, through the links `link_at(path)` names
    (what this sync writes there, else what the target holds; None: not a link). Refused if the
    path leaves the workdir on the way: `s -> .` plus `esc -> s/..` is the workdir's parent.
    A link the target itself made that is absolute ends the walk: what lies beyond is the
    target's own choice (a data folder on another disk), and sync never writes through it."""
    where = rel.split("/")[:-1]
    todo = target.split("/")[::-1]
    hops = 0
    via = ""
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                raise Refused(
                    "refused: symlink %r -> %r leaves the workdir%s; "
                    "add it to .devloopignore or [sync].exclude" % (rel, target, via))
            where.pop()
            continue
        here = "/".join(where + [part])
        link = link_at(here)
        if link is None:
            where.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise Refused("refused: symlink %r -> %r goes through more than %d links (a loop?); "
                          "add it to .devloopignore or [sync].exclude" % (rel, target, MAX_LINK_HOPS))
        if link.startswith("/"):
            return
        via = " (through the link %r -> %r)" % (here, link)
        todo.extend(link.split("/")[::-1])


class Writer:
    """Writes files and links under the tree, each to a temp name in its folder then renamed."""

    def __init__(self, tree):
        self.tree = tree
        self._counter = 0
        self._pid = os.getpid()
        umask = os.umask(0)
        os.umask(umask)
        self._umask = umask
        self._exact_times = False  # set after the first file if utime's nanoseconds stick

    def _dir(self, dir_rel, rel):
        try:
            return self.tree.dir_fd(dir_rel, create=True)
        except Blocked as exc:
            raise Refused("cannot create folder %r on the target: a file devloop did not sync is in the way"
                          % exc.rel)

    def _tmp_name(self):
        self._counter += 1
        return "%s%d-%d" % (TMP_PREFIX, self._pid, self._counter)

    def write_file(self, rel, tar, size, mode, mtime_ns):
        """The next `size` bytes of `tar` into a temp file, renamed over `rel`; its (size,
        mtime_ns) on disk (what the record keeps to verify it later). Raises Leaf when a
        folder on the way is a symlink (the member is then still unread)."""
        dir_rel, _, name = rel.rpartition("/")
        dfd = self._dir(dir_rel, rel)
        # O_EXCL|O_NOFOLLOW: never write through something planted at the temp name; a name
        # left by a killed receiver with the same pid (a restarted container) is skipped
        for _attempt in range(100):
            tmp = self._tmp_name()
            try:
                fd = os.open(tmp, _CREATE_FLAGS, mode, dir_fd=dfd)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise Refused(_write_failed(self._shown(rel), exc))
        else:
            raise Refused("cannot write %r on the target: 100 temp names in its folder are taken" % rel)
        try:
            try:
                try:
                    tar.copy_to(fd, size, rel)
                    if mode & self._umask:  # the umask took bits away: set them explicitly
                        os.fchmod(fd, mode)
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
                    if self._exact_times:  # what the file holds now is known: no fstat per file
                        st = (size, mtime_ns)
                    else:
                        full = os.fstat(fd)
                        st = (full.st_size, full.st_mtime_ns)
                        # this filesystem keeps the nanoseconds set: trust that for the next files
                        self._exact_times = full.st_mtime_ns == mtime_ns and full.st_size == size
                finally:
                    os.close(fd)
            except OSError as exc:  # ENOSPC, EDQUOT, EIO: name the file
                raise Refused(_write_failed(self._shown(rel), exc))
            _replace(tmp, name, dfd, rel)
        except BaseException:
            _unlink_quiet(tmp, dfd)
            raise
        return st

    def _shown(self, rel):
        return os.path.join(self.tree.root, rel)

    def write_link(self, rel, target):
        dir_rel, _, name = rel.rpartition("/")
        dfd = self._dir(dir_rel, rel)
        for _attempt in range(100):
            tmp = self._tmp_name()
            try:
                os.symlink(target, tmp, dir_fd=dfd)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise Refused(_write_failed(self._shown(rel), exc))
        else:
            raise Refused("cannot write %r on the target: 100 temp names in its folder are taken" % rel)
        try:
            _replace(tmp, name, dfd, rel)
        except BaseException:
            _unlink_quiet(tmp, dfd)
            raise

    def remove(self, rel):
        """Delete one synced file/link, then the folders it leaves empty (never ROOT)."""
        tree = self.tree
        dir_rel, _, name = rel.rpartition("/")
        try:
            dfd = tree.dir_fd(dir_rel)
            if dfd is None:
                return False
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (OSError, Leaf, Blocked):
            return False
        if stat.S_ISDIR(st.st_mode):
            return False
        os.unlink(name, dir_fd=dfd)
        while dir_rel:
            parent, _, dname = dir_rel.rpartition("/")
            try:
                os.rmdir(dname, dir_fd=tree.dir_fd(parent))
            except (OSError, Leaf, Blocked):
                break
            tree.forget(dir_rel)
            dir_rel = parent
        return True

    def chmod(self, rel, mode):
        """Set a synced file's mode (a symlink or folder there is left alone)."""
        dir_rel, _, name = rel.rpartition("/")
        try:
            dfd = self.tree.dir_fd(dir_rel)
            if dfd is None:
                return
            fd = os.open(name, _READ_FLAGS | getattr(os, "O_NONBLOCK", 0), dir_fd=dfd)
        except (OSError, Leaf, Blocked):
            return
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fchmod(fd, mode)
        except OSError:
            pass
        finally:
            os.close(fd)


def _replace(tmp, name, dfd, rel):
    try:
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except IsADirectoryError:
        raise Refused("cannot write %r on the target: a folder with files devloop did not sync is in the way" % rel)
    except OSError as exc:
        raise Refused("cannot write %r on the target: %s" % (rel, exc.strerror or exc))


def _unlink_quiet(name, dir_fd=None):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


# -- the tar stream -----------------------------------------------------------------------------

class Damaged(Exception):
    """The byte stream is not the tar stream devloop's sender writes."""


REGULAR = (b"0", b"\0", b"7")
SYMLINK = b"2"
_ZERO_BLOCK = bytes(512)


def _number(field):
    """A tar numeric field: octal text, or base-256 (first byte 0x80) for big values."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise Damaged("bad number %r in a tar header" % field)


def _text(raw):
    return raw.decode("utf-8", "surrogateescape")


class TarReader:
    """Reads the members of the ustar/PAX stream devloop's sender writes, straight off the byte
    stream (no tarfile: its 10 KiB reads and per-member objects cost more than the writes of a
    big first sync). Regular files, symlinks, PAX and GNU long-name records; nothing else."""

    def __init__(self, stream):
        self.stream = stream

    def _exact(self, n):
        data = self.stream.read(n)
        if len(data) == n:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self.stream.read(n - got)
            if not more:
                raise Damaged("the stream ended %d bytes early" % (n - got))
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def _skip(self, n):
        while n > 0:
            data = self.stream.read(min(n, CHUNK))
            if not data:
                raise Damaged("the stream ended inside a member")
            n -= len(data)

    def next(self):
        """(name, type, size, linkname) of the next member, or None at its end. Mode and mtime
        are not read: the receiver takes both from the control record."""
        pax = None
        while True:
            block = self.stream.read(512)
            if len(block) < 512:
                if not block:
                    return None  # a stream cut at a member boundary: what came before is whole
                block += self._exact(512 - len(block))
            if block == _ZERO_BLOCK:
                return None
            try:  # the usual fields: octal digits then NUL (what devloop and tarfile write)
                checksum = int(block[148:154], 8)
                size = int(block[124:135], 8)
            except ValueError:
                checksum = _number(block[148:156])
                size = _number(block[124:136])
            if checksum != sum(block) - sum(block[148:156]) + 256:
                raise Damaged("a tar header's checksum is wrong")
            kind = block[156:157]
            if kind in (b"x", b"g", b"L", b"K"):
                data = self._exact(size)
                self._skip(-size % 512)
                if pax is None:
                    pax = {}
                if kind == b"x":
                    pax.update(_pax_records(data))
                elif kind == b"L":
                    pax["path"] = _text(data.split(b"\0", 1)[0])
                elif kind == b"K":
                    pax["linkpath"] = _text(data.split(b"\0", 1)[0])
                continue  # b"g": global records are not used
            name = block[:100].split(b"\0", 1)[0]
            if block[345] and block[257:263] == b"ustar\0":
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name
            link = block[157:257].split(b"\0", 1)[0] if kind == SYMLINK else b""
            if pax is None:
                return _text(name), kind, size, _text(link)
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise Damaged("bad PAX size %r" % pax["size"])
            return pax.get("path") or _text(name), kind, size, pax.get("linkpath") or _text(link)

    def skip_member(self, size):
        """Past a member's data and padding, unwritten (a path sync leaves alone)."""
        self._skip(size + (-size % 512))

    def read_member(self, size):
        data = self._exact(size)
        self._skip(-size % 512)
        return data

    def copy_to(self, fd, size, rel):
        """The member's `size` bytes into `fd`, then past its padding (read with the last
        block of data: one read for a small file's data and padding)."""
        read = self.stream.read
        remaining = size
        pad = -size % 512
        while remaining > 0:
            if remaining <= CHUNK:
                block = read(remaining + pad)
                if len(block) > remaining:  # the data and (some of) the padding
                    pad -= len(block) - remaining
                    block = memoryview(block)[:remaining]
            else:
                block = read(CHUNK)
            if not block:
                raise Refused("the sync stream ended inside %r" % rel)
            remaining -= len(block)
            written = os.write(fd, block)
            if written < len(block):  # short write (rare: a signal, a full disk reports next)
                view = memoryview(block)[written:]
                while view:
                    view = view[os.write(fd, view):]
        if pad:
            self._skip(pad)


def _pax_records(data):
    """PAX extended header records, each `LEN key=value` and a newline."""
    out = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise Damaged("bad PAX record length")
        if length <= 0:
            raise Damaged("bad PAX record length")
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = _text(value)
        pos += length
    return out


# -- receive -----------------------------------------------------------------------------------

def _drain(stream):
    while stream.read(CHUNK):
        pass


def receive(root, stream):
    os.makedirs(root, exist_ok=True)
    root = os.path.realpath(root)
    tree = Tree(root)
    try:
        return _receive(tree, stream)
    finally:
        tree.close()


def _check_plan(tree, entries, deletes, chmods, to_write, synced):
    """Check every operation of the sync against what the target holds, before any is done:
    raises Refused (a file in the way, a link that leaves the workdir), else returns the paths
    that lie under a folder the target made a symlink (left alone) and, per such folder, how
    many of them there are."""
    deleting = set(rel for rel in deletes if rel in synced)
    status = {}  # dir_rel -> None (a folder, or made by this sync), ("leaf"|"blocked", rel), "exists"
    skip = set()
    leaves = {}

    def dir_status(dir_rel):
        if dir_rel in status:
            return status[dir_rel]
        try:
            result = "exists" if tree.dir_fd(dir_rel) is not None else None
        except Leaf as exc:
            old = synced.get(exc.rel)
            # a link devloop synced that this sync deletes: a folder comes in its place
            gone = exc.rel in deleting and old is not None and old[4] is not None
            result = None if gone else ("leaf", exc.rel)
        except Blocked as exc:
            result = None if exc.rel in deleting else ("blocked", exc.rel)
        status[dir_rel] = result
        return result

    def left_alone(rel):
        st = dir_status(rel.rpartition("/")[0])
        if st is not None and st != "exists" and st[0] == "leaf":
            skip.add(rel)
            leaves[st[1]] = leaves.get(st[1], 0) + 1
            return True
        return False

    for rel in deleting:
        left_alone(rel)
    for rel in chmods:
        if rel in synced:
            left_alone(rel)
    emptied = set()  # folders a delete of this sync may empty (and so remove)
    for rel in deleting:
        parent = rel.rpartition("/")[0]
        while parent and parent not in emptied:
            emptied.add(parent)
            parent = parent.rpartition("/")[0]
    links = []
    for rel in to_write:
        if left_alone(rel):
            continue
        dir_rel, _, name = rel.rpartition("/")
        st = status[dir_rel]
        if st == "exists":
            there = tree.lstat(rel)
            if there is not None and stat.S_ISDIR(there.st_mode) and rel not in emptied:
                raise Refused("cannot write %r on the target: a folder with files devloop did not sync is in the way"
                              % rel)
        elif st is not None:  # ("blocked", rel)
            raise Refused("cannot create folder %r on the target: a file devloop did not sync is in the way"
                          % st[1])
        if entries[rel][4] is not None:
            links.append(rel)

    def link_at(path):
        rec = entries.get(path)
        if rec is not None and path not in skip:
            return rec[4]
        if path in deleting:
            return None
        return tree.readlink(path)

    for rel in links:
        check_link_chain(rel, entries[rel][4], link_at)
    return skip, leaves, link_at


def _receive(tree, stream):
    tar = TarReader(stream)
    first = tar.next()
    if first is None or first[0] != CONTROL_NAME:
        raise Refused("the sync stream does not start with devloop's control record")
    control = json.loads(tar.read_member(first[2]).decode("utf-8"))
    full = bool(control.get("full"))
    entries = control.get("entries") or {}
    deletes = control.get("deletes") or []
    chmods = control.get("chmod") or {}
    keep = control.get("keep") or () if full else ()
    # validate everything before touching anything
    for rel in list(entries) + list(deletes) + list(chmods):
        check_relpath(rel)
    for rel, rec in entries.items():
        if rec[4] is not None:
            check_link(rel, rec[4])
    state = State(tree, create=True)
    try:
        return _apply(tree, state, tar, full, entries, deletes, chmods, keep)
    finally:
        state.close()


def _apply(tree, state, tar, full, entries, deletes, chmods, keep):
    state.check_files()
    state.remove_stale()
    keep = set(keep)
    to_write = [rel for rel in entries if rel not in chmods and rel not in keep]
    stored = state.load() if (full or deletes or chmods) else None
    synced = stored or {}
    skip, leaves, link_at = _check_plan(tree, entries, deletes, chmods, to_write, synced)
    checked = set(to_write)

    writer = Writer(tree)
    deleted = 0
    gone = []
    for rel in deletes:
        if rel in synced and rel not in skip:
            if writer.remove(rel):
                deleted += 1
            gone.append(rel)
    for rel, mode in chmods.items():
        if rel in synced and rel in entries and entries[rel][4] is None and rel not in skip:
            writer.chmod(rel, mode)

    written = {}
    unsent = ()
    nbytes = 0
    dirs = set(rel.rpartition("/")[0] for rel in to_write if rel not in skip)
    noted = bool(dirs)
    if noted:
        state.begin_writes(dirs)
    try:
        write_file = writer.write_file
        while True:
            member = tar.next()
            if member is None:
                break
            rel, kind, size, linkname = member
            if rel == HASHES_NAME and kind in REGULAR:
                _fill_hashes(entries, json.loads(tar.read_member(size).decode("utf-8")))
                continue
            if rel == UNSENT_NAME and kind in REGULAR:
                unsent = json.loads(tar.read_member(size).decode("utf-8"))
                if not isinstance(unsent, list):
                    raise Refused("refused: the unsent record of the sync stream is not a list")
                unsent = set(unsent)
                continue
            rec = entries.get(rel)
            if rec is None or rel in written:
                check_relpath(rel)
                raise Refused("refused: %r is in the sync stream but not in its control record" % rel)
            if kind not in REGULAR and kind != SYMLINK:
                raise Refused("refused: %r is neither a file nor a symlink" % rel)
            if kind == SYMLINK and linkname != rec[4]:
                raise Refused("refused: symlink %r does not match its control record" % rel)
            if rel in skip:
                tar.skip_member(size)
                continue
            if rel not in checked:  # sent though announced as kept: checked now
                dir_rel = rel.rpartition("/")[0]
                if dir_rel not in dirs:
                    dirs.add(dir_rel)
                    state.begin_writes(dirs)
                    noted = True
                if kind == SYMLINK:
                    check_link_chain(rel, rec[4], link_at)
            try:
                if kind == SYMLINK:
                    writer.write_link(rel, rec[4])
                    written[rel] = None
                else:
                    written[rel] = write_file(rel, tar, size, int(rec[2]) & 0o777, int(rec[1]))
                    nbytes += size
            except Leaf as exc:  # a folder the target turned into a symlink since the check
                tar.skip_member(size)
                skip.add(rel)
                leaves[exc.rel] = leaves.get(exc.rel, 0) + 1
    finally:
        if noted:
            state.end_writes()

    # record what is now there
    def record(rel, rec):
        if rel in written:
            rs = written[rel]
            if rs is None or rel in unsent:  # a link; or a file that changed while it was read
                return list(rec[:5]) + [None, None]
            return list(rec[:5]) + [rs[0], rs[1]]
        old = synced.get(rel)
        if old is not None and old[3] == rec[3] and old[4] == rec[4] and old[0] == rec[0]:
            if rel in chmods:
                st = tree.lstat(rel)
                if st is not None:
                    return list(rec[:5]) + [st.st_size, st.st_mtime_ns]
                return list(rec[:5]) + [None, None]
            return list(rec[:5]) + list(old[5:7])
        return list(rec[:5]) + [None, None]  # not verified: sent again next time

    if full:
        files = {}
        for rel, rec in entries.items():
            if rel in skip:  # left alone under a symlinked folder: what was recorded stays
                if rel in synced:
                    files[rel] = synced[rel]
                continue
            files[rel] = record(rel, rec)
        for rel in skip:
            if rel not in files and rel in synced:
                files[rel] = synced[rel]
        state.write_base(files)
    else:
        size = state.append_journal(
            {rel: record(rel, rec) for rel, rec in entries.items() if rel not in skip}, gone)
        if size > COMPACT_JOURNAL_BYTES:
            state.write_base(state.load() or {})
    answer = {"ok": True, "files": len(written), "bytes": nbytes, "deleted": deleted}
    if leaves:
        answer["warnings"] = [_leaf_warning(tree, leaf, n) for leaf, n in sorted(leaves.items())]
    return answer


def _leaf_warning(tree, leaf, count):
    where = tree.readlink(leaf)
    return ("%s/ is a symlink on the target%s: sync does not enter or delete through it, so %d "
            "path%s under it %s left as %s -- fix: exclude %s/ ([sync].exclude) or make it a folder again"
            % (leaf, " (-> %s)" % where if where else "", count, "" if count == 1 else "s",
               "is" if count == 1 else "are", "it is" if count == 1 else "they are", leaf))


def _fill_hashes(entries, hashes):
    """Hashes the sender computed while sending, for entries it announced without one."""
    if not isinstance(hashes, dict):
        raise Refused("refused: the hashes record of the sync stream is not a mapping")
    for rel, digest in hashes.items():
        rec = entries.get(rel)
        if rec is not None and rec[3] == "" and isinstance(digest, str):
            rec[3] = digest


def _answer(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class FramedReader:
    """One sync out of a persistent stream: 4-byte big-endian length + data chunks, a zero length
    ends the sync (so one receiver process serves many syncs without a new start each time)."""

    def __init__(self, stream):
        self.stream = stream
        self.left = 0
        self.done = False
        self.eof = False
        self.manifest_request = False

    def _next_chunk(self):
        head = _read_exact(self.stream, 4)
        if len(head) < 4:
            self.done = self.eof = True
            return
        self.left = int.from_bytes(head, "big")
        if self.left == MANIFEST_REQUEST:
            self.left = 0
            self.manifest_request = True
        if self.left == 0:
            self.done = True

    def read(self, n=-1):
        while not self.done and self.left == 0:
            self._next_chunk()
        if self.done:
            return b""
        if n is None or n < 0 or n > self.left:
            n = self.left
        data = self.stream.read(n)
        if not data:
            self.done = self.eof = True
            return b""
        self.left -= len(data)
        return data


def _read_exact(stream, n):
    parts = []
    while n > 0:
        block = stream.read(n)
        if not block:
            break
        parts.append(block)
        n -= len(block)
    return b"".join(parts)


def _receive_answer(root, stream):
    try:
        result = receive(root, stream)
    except Refused as exc:
        result = {"ok": False, "error": str(exc)}
    except (Damaged, ValueError, KeyError, TypeError, IndexError) as exc:
        result = {"ok": False, "error": "the sync stream is damaged: %s" % exc}
    except OSError as exc:
        result = {"ok": False, "error": "writing on the target failed: %s" % exc}
    _drain(stream)
    _answer(result)
    return result


def _widen_pipe(fd):
    """A 1 MiB pipe instead of 64 KiB: a big sync then moves in a few wakeups per MiB, not
    sixteen. Only where stdin is a pipe and the system allows it (else nothing changes)."""
    try:
        import fcntl

        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except (ImportError, OSError, ValueError):
        pass


def receive_main(argv):
    """`receive ROOT`: one tar stream until EOF. `receive ROOT --serve`: framed syncs, one
    answer line each, until stdin closes."""
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] != "--serve"):
        sys.stderr.write("usage: receive ROOT [--serve] (a sync tar stream on stdin)\n")
        return 2
    _widen_pipe(sys.stdin.fileno())
    stream = io.BufferedReader(io.FileIO(sys.stdin.fileno(), "rb", closefd=False), CHUNK)
    if len(argv) == 1:
        return 0 if _receive_answer(argv[0], stream)["ok"] else 1
    while True:
        reader = FramedReader(stream)
        reader._next_chunk()
        if reader.eof:
            return 0
        if reader.manifest_request:
            _answer(manifest_answer(argv[0]))
            continue
        _receive_answer(argv[0], reader)
        if reader.eof:
            return 0


def manifest_answer(root):
    """The stored manifest, checked against the disk by stat (no hashing), or None."""
    root = os.path.realpath(root)
    files = load_stored(root)
    if files is None:
        return None
    # the journal is compacted by receive once it is big; rewriting the whole record here on
    # every question would cost more than reading the few journal lines it saves
    good = {}
    lstat = os.lstat
    prefix = root + "/"
    is_reg = stat.S_ISREG
    for rel, rec in files.items():
        if rec[4] is not None:
            if _link_verified(prefix + rel, rec[4]):
                good[rel] = rec[:5]
            continue
        # a file: still the size, mtime and mode written? (inline: 10,000 lstat calls here)
        try:
            st = lstat(prefix + rel)
        except OSError:
            continue
        if (is_reg(st.st_mode) and st.st_size == rec[5] and st.st_mtime_ns == rec[6]
                and st.st_mode & 0o777 == rec[2]):
            good[rel] = rec[:5]
    return {"version": 1, "files": good}


def manifest_main(argv):
    if len(argv) != 1:
        sys.stderr.write("usage: manifest ROOT\n")
        return 2
    _answer(manifest_answer(argv[0]))
    return 0
