"""`pull ROOT`: the target's side of pulling outputs back (`[sync] pull`), the sync stream in
the other direction.

Two requests on stdin, one JSON line each:
  {"roots": [REL, ...]}  ->  one JSON line {"files": {rel: [size, mtime_ns]}}: the regular files
                            under those folders (symlinks are neither followed nor listed;
                            `.devloop/` and `.git/` are skipped; at most MAX_FILES)
  {"paths": [REL, ...]}  ->  a ustar stream on stdout: each path (opened O_NOFOLLOW, regular files
                            only, under ROOT: `..` and absolute names refused) as a member of the
                            size fstat gave when it was opened, then a last member
                            `.devloop-pull.json` {"changed": [...], "missing": [...]}: files that
                            changed size while read (their member is padded: the client drops
                            them) or were gone. The client matches the names (gitignore syntax,
                            pathspec) and decides what is new: the agent stays stdlib-only.
"""

import json
import os
import stat
import sys

from .syncrecv import Refused, check_relpath

MAX_FILES = 100000
CHUNK = 1 << 20
SKIP_DIRS = (".devloop", ".git")
TRAILER = ".devloop-pull.json"


def list_files(root, roots):
    found = {}
    for top in roots or ["."]:
        top = "." if top in ("", ".") else top.strip("/")
        if top != "." and not _safe(top):
            continue
        start = os.path.join(root, top) if top != "." else root
        try:
            if stat.S_ISLNK(os.lstat(start).st_mode):
                continue
        except OSError:
            continue
        for folder, dirs, files in os.walk(start, followlinks=False):
            rel_folder = os.path.relpath(folder, root)
            rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
            dirs[:] = sorted(d for d in dirs if not (rel_folder == "" and d in SKIP_DIRS))
            for name in sorted(files):
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[rel_folder + name] = [st.st_size, st.st_mtime_ns]
                    if len(found) >= MAX_FILES:
                        return found
    return found


def _safe(rel):
    """A clean relative path inside ROOT (no `..`, not absolute, not in .devloop/)."""
    try:
        check_relpath(rel)
    except Refused:
        return False
    return True


def _header(name, size, mtime_ns):
    data = name.encode("utf-8", "surrogateescape")
    pax = b""
    if len(data) > 99:  # PAX record for a long name: "LEN path=NAME\n", LEN counting itself
        record = b" path=" + data + b"\n"
        length = len(record) + len(str(len(record)))
        while len(str(length)) + len(record) != length:
            length = len(str(length)) + len(record)
        body = str(length).encode() + record
        pax = _block(b"././@PaxHeader", len(body), 0, b"x") + body + b"\0" * (-len(body) % 512)
        data = data[-99:]
    return pax + _block(data, size, mtime_ns // 1000000000, b"0")


def _block(name, size, mtime, kind):
    head = bytearray(512)
    head[0:len(name)] = name
    head[100:108] = b"0000644\0"
    head[108:124] = b"0000000\x000000000\x00"
    head[124:136] = b"%011o\0" % size
    head[136:148] = b"%011o\0" % max(0, mtime)
    head[148:156] = b"        "
    head[156:157] = kind
    head[257:265] = b"ustar\x0000"
    head[148:155] = b"%06o\0" % sum(head)
    return bytes(head)


def send_files(root, paths, out):
    changed, missing = [], []
    for rel in paths:
        rel = str(rel)
        if not _safe(rel):
            missing.append(rel)
            continue
        try:
            fd = _open_under(root, rel)
        except OSError:
            missing.append(rel)
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                missing.append(rel)
                continue
            size = st.st_size
            out.write(_header(rel, size, st.st_mtime_ns))
            left = size
            while left > 0:
                data = os.read(fd, min(CHUNK, left))
                if not data:
                    break
                out.write(data)
                left -= len(data)
            if left > 0 or os.fstat(fd).st_size != size:
                changed.append(rel)
                out.write(b"\0" * left)
            out.write(b"\0" * (-size % 512))
        finally:
            os.close(fd)
    trailer = json.dumps({"changed": changed, "missing": missing}).encode()
    out.write(_block(TRAILER.encode(), len(trailer), 0, b"0") + trailer + b"\0" * (-len(trailer) % 512))
    out.write(b"\0" * 1024)
    out.flush()


def _open_under(root, rel):
    """An fd of ROOT/rel, every folder on the way opened O_NOFOLLOW|O_DIRECTORY (nothing read
    through a symlink the target made)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    dfd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        parts = rel.split("/")
        for part in parts[:-1]:
            nfd = os.open(part, flags | getattr(os, "O_DIRECTORY", 0), dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(parts[-1], flags, dir_fd=dfd)
    finally:
        os.close(dfd)


def pull_main(argv):
    root = os.path.abspath(argv[0] if argv else ".")
    stdin = sys.stdin.buffer
    out = sys.stdout.buffer
    try:
        first = json.loads(stdin.readline() or b"{}")
    except ValueError:
        first = {}
    files = list_files(root, [str(r) for r in first.get("roots") or ["."]]) if os.path.isdir(root) else {}
    out.write((json.dumps({"files": files}) + "\n").encode())
    out.flush()
    try:
        second = json.loads(stdin.readline() or b"{}")
    except ValueError:
        second = {}
    paths = second.get("paths") or []
    if paths:
        send_files(root, paths, out)
    return 0
