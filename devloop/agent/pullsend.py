"""`pull ROOT`: the target's side of pulling outputs back (`[sync] pull`), the sync stream in
the other direction.

Two requests on stdin, one JSON line each:
  {"roots": [REL, ...], "match": [[REGEX, INCLUDE], ...], "prune": [[REGEX, INCLUDE], ...]}
                         ->  one JSON line {"files": {rel: [size, mtime_ns]}, "truncated": BOOL}:
                            the regular files under those folders that the `match` rules pick
                            (symlinks are neither followed nor listed). `match` and `prune` are
                            gitignore rules already compiled to regexes by pathspec on devloop's
                            side (the agent stays stdlib-only) and decided here as pathspec's
                            GitIgnoreSpec does (`verdict`), a folder's verdict holding for all
                            under it as in git. Folders the `prune` rules (the sync's exclusions)
                            exclude are not entered unless `match` picks them or they are a root,
                            nor are `.git/`, `.devloop/`, `node_modules/` or a virtualenv (a
                            folder with pyvenv.cfg): a pass never walks a venv. Bounded: at most
                            MAX_FILES listed and MAX_SCANNED entries looked at, else "truncated".
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
TRAILER = ".devloop-pull.json"


MAX_SCANNED = 1000000
NEVER_ENTERED = (".git", ".devloop", "node_modules")


def verdict(rules, path):
    """Does the last rule that matters pick `path` (True), leave it (False), or none match
    (None)? pathspec's GitIgnoreSpec.check_file, ported: a match through the folder mark
    (`ps_d`) is weaker than a file match, except that an including folder match always counts."""
    out, out_priority = None, 0
    for regex, include in rules:
        found = regex.search(path)
        if found is None:
            continue
        dir_mark = found.groupdict().get("ps_d")
        priority = 1 if dir_mark else 2
        if (include and dir_mark) or priority >= out_priority:
            out, out_priority = include, priority
    return out


def _compile(rules):
    import re

    if rules is None:
        return None
    return [(re.compile(str(regex)), bool(include)) for regex, include in rules]


def _roots(roots):
    clean = []
    for top in roots or ["."]:
        top = "." if top in ("", ".") else str(top).strip("/")
        if (top == "." or _safe(top)) and top not in clean:
            clean.append(top)
    return clean


def walk(root, roots, match=None, prune=None, max_files=MAX_FILES, max_scanned=MAX_SCANNED):
    """({rel: [size, mtime_ns]}, truncated): see the module docstring."""
    match, prune = _compile(match), _compile(prune)
    roots = _roots(roots)
    found, scanned = {}, 0
    for top in roots:
        start = os.path.join(root, top) if top != "." else root
        try:
            if not stat.S_ISDIR(os.lstat(start).st_mode):
                continue
        except OSError:
            continue
        picked = False
        if top != "." and match is not None:  # a folder picked above the root picks all in it
            parts = top.split("/")
            picked = any(verdict(match, "/".join(parts[:n]) + "/") for n in range(1, len(parts) + 1))
        stack = [(start, "" if top == "." else top + "/", picked)]
        while stack:
            folder, rel, picked = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            scanned += len(entries)
            if scanned > max_scanned:
                return found, True
            for entry in entries:
                path = rel + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name in NEVER_ENTERED or (path in roots and path != top):
                            continue  # never, or walked as a root of its own
                        sub = picked or (match is not None and bool(verdict(match, path + "/")))
                        if not sub and (
                                (prune is not None and verdict(prune, path + "/"))
                                or os.path.exists(os.path.join(entry.path, "pyvenv.cfg"))):
                            continue  # the sync leaves it alone: so does the listing
                        stack.append((entry.path, path + "/", sub))
                    elif entry.is_file(follow_symlinks=False):
                        if match is not None and not picked and not verdict(match, path):
                            continue
                        st = entry.stat(follow_symlinks=False)
                        found[path] = [st.st_size, st.st_mtime_ns]
                        if len(found) >= max_files:
                            return found, True
                except OSError:
                    continue
    return found, False


def list_files(root, roots, match=None, prune=None):
    return walk(root, roots, match, prune)[0]


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
    files, truncated = {}, False
    if os.path.isdir(root):
        files, truncated = walk(root, [str(r) for r in first.get("roots") or ["."]],
                                first.get("match"), first.get("prune"))
    out.write((json.dumps({"files": files, "truncated": truncated}) + "\n").encode())
    out.flush()
    try:
        second = json.loads(stdin.readline() or b"{}")
    except ValueError:
        second = {}
    paths = second.get("paths") or []
    if paths:
        send_files(root, paths, out)
    return 0
