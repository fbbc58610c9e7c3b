"""The receiving end of a sync, inside the target (stdlib only, Python 3.8+).

`receive ROOT` reads a tar stream on stdin whose first member is a control JSON:
    {"v": 1, "full": bool, "deletes": [REL...], "chmod": {REL: MODE},
     "entries": {REL: [size, mtime_ns, mode, sha256, link]}}
`entries` is the complete new manifest when `full`, else only the paths sent or re-moded.
Every other member is a file or symlink named in `entries`. Each file is written to a temp name
in its own folder and renamed over the old one, so a running cell never reads half a file.
Absolute paths, `..`, and symlinks that leave ROOT are refused (nothing is written then);
folders on the way that are links leaving ROOT are refused too. Only paths devloop itself synced
(ROOT/.devloop/manifest.json) are ever deleted or re-moded: what a run wrote stays.
One JSON line answers: {"ok": true, "files": N, "bytes": N, "deleted": N} or {"ok": false, "error": TEXT}.

`manifest ROOT` prints the stored manifest as {"version": 1, "files": {REL: [size, mtime_ns,
mode, sha256, link]}}, keeping only paths whose file on disk still matches what was written
(so a file changed or lost remotely is sent again), or `null` when nothing was synced there.
The check is a stat per file against the (size, mtime_ns, mode) recorded when it was written,
never a re-hash. `receive ROOT --serve` answers the same line for a frame header of
MANIFEST_REQUEST instead of a sync, so `devloop sync` needs one process start, not two.

The stored manifest is a base file plus an append-only journal, so a one-file sync appends one
line instead of rewriting the record of a 100,000-file tree.
"""
import io
import json
import os
import stat
import sys

CONTROL_NAME = ".devloop-control.json"
# last member when the sender hashed files while sending them: {REL: sha256} for entries sent with ""
HASHES_NAME = ".devloop/hashes.json"
STATE_DIR = ".devloop"
BASE = "manifest.json"
JOURNAL = "manifest.log"
CHUNK = 1 << 20
COMPACT_JOURNAL_BYTES = 1 << 20
MANIFEST_REQUEST = 0xFFFFFFFF  # a --serve frame header that asks for the manifest line


class Refused(Exception):
    """The stream asks for something unsafe or impossible; the message says what and why."""


# -- stored manifest -----------------------------------------------------------------------------

def _state_path(root, name):
    return os.path.join(root, STATE_DIR, name)


def load_stored(root):
    """{rel: [size, mtime_ns, mode, sha256, link, remote_size, remote_mtime_ns]} or None."""
    try:
        with open(_state_path(root, BASE), "r", encoding="utf-8") as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        files = None
    try:
        with open(_state_path(root, JOURNAL), "r", encoding="utf-8") as f:
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


def _write_base(root, files):
    os.makedirs(os.path.join(root, STATE_DIR), exist_ok=True)
    path = _state_path(root, BASE)
    tmp = path + ".%d.tmp" % os.getpid()
    # dumps, not dump: dump() to a file runs the pure-Python encoder (10x slower)
    text = json.dumps({"version": 1, "files": files}, separators=(",", ":"))
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    try:
        os.unlink(_state_path(root, JOURNAL))
    except OSError:
        pass


def _append_journal(root, sets, dels):
    os.makedirs(os.path.join(root, STATE_DIR), exist_ok=True)
    line = json.dumps({"set": sets, "del": dels}, separators=(",", ":")) + "\n"
    with open(_state_path(root, JOURNAL), "a", encoding="utf-8") as f:
        f.write(line)
        size = f.tell()
    return size


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


class Writer:
    """Writes files under root, never through a folder that leads outside it."""

    def __init__(self, root):
        self.root = root
        self._safe_dirs = {""}
        self._counter = 0
        self._pid = os.getpid()
        umask = os.umask(0)
        os.umask(umask)
        self._umask = umask
        self._exact_times = False  # set after the first file if utime's nanoseconds stick

    def _inside(self, path):
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def prepare_dir(self, dir_rel):
        if dir_rel in self._safe_dirs:
            return
        parent = dir_rel.rpartition("/")[0]
        self.prepare_dir(parent)
        path = os.path.join(self.root, dir_rel)
        try:
            os.mkdir(path)  # the common case on a first sync: one syscall
        except FileExistsError:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if not self._inside(path):
                    raise Refused("refused: folder %r is a symlink that leads outside the workdir" % dir_rel)
            elif not stat.S_ISDIR(st.st_mode):
                raise Refused("cannot create folder %r on the target: a file devloop did not sync is in the way" % dir_rel)
        self._safe_dirs.add(dir_rel)

    def _tmp(self, dir_rel):
        self._counter += 1
        name = ".devloop-tmp-%d-%d" % (self._pid, self._counter)
        # rel paths are checked clean and relative (check_relpath): plain joins are enough
        return "%s/%s/%s" % (self.root, dir_rel, name) if dir_rel else "%s/%s" % (self.root, name)

    def write_file(self, rel, tar, size, mode, mtime_ns):
        """The next `size` bytes of `tar` into a temp file, renamed over `rel`; its (size,
        mtime_ns) on disk (what the record keeps to verify it later)."""
        dir_rel = rel.rpartition("/")[0]
        self.prepare_dir(dir_rel)
        # O_EXCL|O_NOFOLLOW: never write through something planted at the temp name; a name
        # left by a killed receiver with the same pid (a restarted container) is skipped
        for _attempt in range(100):
            tmp = self._tmp(dir_rel)
            try:
                fd = os.open(tmp, _CREATE_FLAGS, mode)
                break
            except FileExistsError:
                continue
        else:
            raise Refused("cannot write %r on the target: 100 temp names in its folder are taken" % rel)
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
            _replace(tmp, self.root + "/" + rel, rel)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return st

    def write_link(self, rel, target):
        dir_rel = rel.rpartition("/")[0]
        self.prepare_dir(dir_rel)
        tmp = self._tmp(dir_rel)
        os.symlink(target, tmp)
        try:
            _replace(tmp, os.path.join(self.root, rel), rel)
        except BaseException:
            _unlink_quiet(tmp)
            raise


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _replace(tmp, dest, rel):
    try:
        os.replace(tmp, dest)
    except IsADirectoryError:
        raise Refused("cannot write %r on the target: a folder with files devloop did not sync is in the way" % rel)
    except OSError as exc:
        raise Refused("cannot write %r on the target: %s" % (rel, exc.strerror or exc))


def _unlink_quiet(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_synced(root, rel):
    """Delete one synced file/link, then the folders it leaves empty (never ROOT)."""
    path = os.path.join(root, rel)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return False
    os.unlink(path)
    parent = rel.rpartition("/")[0]
    while parent:
        try:
            os.rmdir(os.path.join(root, parent))
        except OSError:
            break
        parent = parent.rpartition("/")[0]
    return True


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
    tar = TarReader(stream)
    first = tar.next()
    if first is None or first[0] != CONTROL_NAME:
        raise Refused("the sync stream does not start with devloop's control record")
    control = json.loads(tar.read_member(first[2]).decode("utf-8"))
    full = bool(control.get("full"))
    entries = control.get("entries") or {}
    deletes = control.get("deletes") or []
    chmods = control.get("chmod") or {}
    # validate everything before touching anything
    for rel in list(entries) + list(deletes) + list(chmods):
        check_relpath(rel)
    for rel, rec in entries.items():
        if rec[4] is not None:
            check_link(rel, rec[4])

    stored = load_stored(root) if (full or deletes or chmods) else None
    synced = stored or {}
    writer = Writer(root)
    deleted = 0
    gone = []
    for rel in deletes:
        if rel in synced:
            if _remove_synced(root, rel):
                deleted += 1
            gone.append(rel)
    for rel, mode in chmods.items():
        if rel in synced and rel in entries and entries[rel][4] is None:
            try:
                os.chmod(os.path.join(root, rel), mode)
            except OSError:
                pass

    written = {}
    nbytes = 0
    write_file = writer.write_file
    while True:
        member = tar.next()
        if member is None:
            break
        rel, kind, size, linkname = member
        if rel == HASHES_NAME and kind in REGULAR:
            _fill_hashes(entries, json.loads(tar.read_member(size).decode("utf-8")))
            continue
        rec = entries.get(rel)
        if rec is None or rel in written:
            check_relpath(rel)
            raise Refused("refused: %r is in the sync stream but not in its control record" % rel)
        if kind == SYMLINK:
            if linkname != rec[4]:
                raise Refused("refused: symlink %r does not match its control record" % rel)
            writer.write_link(rel, rec[4])
            written[rel] = None
        elif kind in REGULAR:
            written[rel] = write_file(rel, tar, size, int(rec[2]) & 0o777, int(rec[1]))
            nbytes += size
        else:
            raise Refused("refused: %r is neither a file nor a symlink" % rel)

    # record what is now there
    def record(rel, rec):
        if rel in written:
            rs = written[rel]
            return list(rec[:5]) + ([rs[0], rs[1]] if rs else [None, None])
        old = synced.get(rel)
        if old is not None and old[3] == rec[3] and old[4] == rec[4] and old[0] == rec[0]:
            if rel in chmods:
                try:
                    st = os.lstat(os.path.join(root, rel))
                    return list(rec[:5]) + [st.st_size, st.st_mtime_ns]
                except OSError:
                    return list(rec[:5]) + [None, None]
            return list(rec[:5]) + list(old[5:7])
        return list(rec[:5]) + [None, None]  # not verified: sent again next time

    if full:
        _write_base(root, {rel: record(rel, rec) for rel, rec in entries.items()})
    else:
        size = _append_journal(root, {rel: record(rel, rec) for rel, rec in entries.items()}, gone)
        if size > COMPACT_JOURNAL_BYTES:
            _write_base(root, load_stored(root) or {})
    return {"ok": True, "files": len(written), "bytes": nbytes, "deleted": deleted}


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
