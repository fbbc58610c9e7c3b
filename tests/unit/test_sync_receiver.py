"""The agent's receiver against hand-made tar streams: what it writes, what it refuses.

Driven in-process (devloop.agent.syncrecv.receive) for the refusals, and once through the real
agent bundle in a subprocess."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from devloop.agent import syncrecv
from devloop.core.agent_bundle import write_bundle


def tar_stream(control, members=(), fmt=tarfile.PAX_FORMAT):
    """members: (name, bytes) for files, (name, None, linktarget) for symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=fmt) as tf:
        data = json.dumps(control).encode()
        info = tarfile.TarInfo(syncrecv.CONTROL_NAME)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        for m in members:
            info = tarfile.TarInfo(m[0])
            if m[1] is None:
                info.type = tarfile.SYMTYPE
                info.linkname = m[2]
                tf.addfile(info)
            else:
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    buf.seek(0)
    return buf


def entry(data=b"", mode=0o644, link=None):
    return [len(data), 1_700_000_000_000_000_000, mode, "h", link]


def control(entries, deletes=(), full=False, chmod=None):
    return {"v": 1, "full": full, "entries": entries, "deletes": list(deletes), "chmod": chmod or {}}


def listing(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def test_writes_files_modes_links_and_records(tmp_path):
    root = tmp_path / "wd"
    ents = {"a/b.py": entry(b"hi"), "run.sh": entry(b"#!", 0o755), "l": entry(link="a/b.py")}
    res = syncrecv.receive(str(root), tar_stream(control(ents, full=True),
                                                 [("a/b.py", b"hi"), ("run.sh", b"#!"), ("l", None, "a/b.py")]))
    assert res == {"ok": True, "files": 3, "bytes": 4, "deleted": 0}
    assert (root / "a/b.py").read_bytes() == b"hi"
    assert os.stat(root / "run.sh").st_mode & 0o777 == 0o755
    assert os.readlink(root / "l") == "a/b.py"
    assert os.stat(root / "a/b.py").st_mtime_ns == 1_700_000_000_000_000_000
    assert set(syncrecv.load_stored(str(root))) == set(ents)
    assert not [p for p in listing(root) if "devloop-tmp" in p]


@pytest.mark.parametrize("name, why", [
    ("/etc/evil", "absolute"),
    ("../evil", ".."),
    ("a/../../evil", ".."),
    (".devloop/manifest.json", "state folder"),
])
def test_refuses_unsafe_paths_and_writes_nothing(tmp_path, name, why):
    root = tmp_path / "wd"
    with pytest.raises(syncrecv.Refused, match=why):
        syncrecv.receive(str(root), tar_stream(control({name: entry(b"x")}), [(name, b"x")]))
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "b/../../../x"])
def test_refuses_links_that_leave_the_workdir(tmp_path, target):
    root = tmp_path / "wd"
    with pytest.raises(syncrecv.Refused, match="leaves the workdir"):
        syncrecv.receive(str(root), tar_stream(control({"a/l": entry(link=target)}), [("a/l", None, target)]))
    assert listing(tmp_path) == set()


def test_keeps_links_that_stay_inside(tmp_path):
    root = tmp_path / "wd"
    ents = {"a/b/l": entry(link="../../top.py"), "top.py": entry(b"1")}
    syncrecv.receive(str(root), tar_stream(control(ents), [("a/b/l", None, "../../top.py"), ("top.py", b"1")]))
    assert (root / "a/b/l").read_bytes() == b"1"


def test_refuses_member_not_in_control(tmp_path):
    with pytest.raises(syncrecv.Refused, match="not in its control record"):
        syncrecv.receive(str(tmp_path / "wd"), tar_stream(control({}), [("x.py", b"1")]))


def test_never_writes_through_a_folder_link_that_leaves(tmp_path):
    root = tmp_path / "wd"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    os.symlink(outside, root / "data")  # made on the remote by someone else
    res = syncrecv.receive(str(root), tar_stream(control({"data/x": entry(b"1"), "y": entry(b"2")}),
                                                 [("data/x", b"1"), ("y", b"2")]))
    # a leaf: not entered, said once with its path; the rest of the sync goes on
    assert res["ok"] and res["files"] == 1 and (root / "y").read_bytes() == b"2"
    assert len(res["warnings"]) == 1 and res["warnings"][0].startswith("data/ is a symlink on the target")
    assert list(outside.iterdir()) == []
    assert "data/x" not in syncrecv.load_stored(str(root))


def test_deletes_only_what_devloop_synced(tmp_path):
    root = tmp_path / "wd"
    syncrecv.receive(str(root), tar_stream(control({"old.py": entry(b"1"), "keep.py": entry(b"2")}, full=True),
                                           [("old.py", b"1"), ("keep.py", b"2")]))
    (root / "checkpoints").mkdir()
    (root / "checkpoints/c.pt").write_bytes(b"w")
    (root / "mine.txt").write_bytes(b"w")
    res = syncrecv.receive(str(root), tar_stream(control({}, deletes=["old.py", "mine.txt", "checkpoints/c.pt"])))
    assert res["deleted"] == 1
    assert listing(root) - {".devloop/manifest.json", ".devloop/manifest.log"} == {
        "keep.py", "checkpoints/c.pt", "mine.txt"}
    assert set(syncrecv.load_stored(str(root))) == {"keep.py"}


def test_deleting_the_last_file_removes_empty_folders_but_not_others(tmp_path):
    root = tmp_path / "wd"
    syncrecv.receive(str(root), tar_stream(control({"a/b/x.py": entry(b"1")}, full=True), [("a/b/x.py", b"1")]))
    (root / "a/out.txt").write_bytes(b"run output")
    syncrecv.receive(str(root), tar_stream(control({}, deletes=["a/b/x.py"])))
    assert not (root / "a/b").exists() and (root / "a/out.txt").exists()


def test_manifest_mode_drops_files_changed_remotely(tmp_path):
    root = tmp_path / "wd"
    ents = {"a.py": entry(b"1"), "b.py": entry(b"2"), "c.py": entry(b"3")}
    syncrecv.receive(str(root), tar_stream(control(ents, full=True), [("a.py", b"1"), ("b.py", b"2"), ("c.py", b"3")]))
    (root / "b.py").write_bytes(b"edited on the remote")
    (root / "c.py").unlink()
    bundle = write_bundle(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(bundle), "manifest", str(root)], capture_output=True, check=True)
    answer = json.loads(out.stdout)
    assert set(answer["files"]) == {"a.py"}
    empty = subprocess.run([sys.executable, str(bundle), "manifest", str(tmp_path / "none")],
                           capture_output=True, check=True)
    assert json.loads(empty.stdout) is None


def test_bundle_receive_answers_refusal_as_json(tmp_path):
    bundle = write_bundle(tmp_path / "cache")
    data = tar_stream(control({"../x": entry(b"1")}), [("../x", b"1")]).getvalue()
    out = subprocess.run([sys.executable, str(bundle), "receive", str(tmp_path / "wd")], input=data,
                         capture_output=True)
    answer = json.loads(out.stdout)
    assert out.returncode == 1 and answer["ok"] is False and "'..'" in answer["error"]
    assert not (tmp_path / "x").exists()


def test_serve_mode_takes_several_framed_syncs(tmp_path):
    bundle = write_bundle(tmp_path / "cache")

    def framed(stream):
        data = stream.getvalue()
        return len(data).to_bytes(4, "big") + data + b"\0\0\0\0"

    first = framed(tar_stream(control({"a.py": entry(b"1")}, full=True), [("a.py", b"1")]))
    bad = framed(tar_stream(control({"/abs": entry(b"1")}), [("/abs", b"1")]))
    second = framed(tar_stream(control({"b.py": entry(b"22")}), [("b.py", b"22")]))
    out = subprocess.run([sys.executable, str(bundle), "receive", str(tmp_path / "wd"), "--serve"],
                         input=first + bad + second, capture_output=True)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0
    assert [a["ok"] for a in answers] == [True, False, True]
    assert set(syncrecv.load_stored(str(tmp_path / "wd"))) == {"a.py", "b.py"}


def test_serve_mode_answers_manifest_requests_between_syncs(tmp_path):
    """`devloop sync` asks the kept receiver what it holds, then syncs through it: one process."""
    bundle = write_bundle(tmp_path / "cache")
    ask = syncrecv.MANIFEST_REQUEST.to_bytes(4, "big")
    data = tar_stream(control({"a.py": entry(b"1")}, full=True), [("a.py", b"1")]).getvalue()
    sync = len(data).to_bytes(4, "big") + data + b"\0\0\0\0"
    out = subprocess.run([sys.executable, str(bundle), "receive", str(tmp_path / "wd"), "--serve"],
                         input=ask + sync + ask, capture_output=True)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, out.stderr
    assert answers[0] is None and answers[1]["ok"] is True
    assert set(answers[2]["files"]) == {"a.py"} and answers[2]["files"]["a.py"][:3] == entry(b"1")[:3]


def test_manifest_reads_the_journal_without_rewriting_the_record(tmp_path):
    root = tmp_path / "wd"
    syncrecv.receive(str(root), tar_stream(control({"a.py": entry(b"1")}, full=True), [("a.py", b"1")]))
    syncrecv.receive(str(root), tar_stream(control({"b.py": entry(b"2")}), [("b.py", b"2")]))
    base = (root / ".devloop" / syncrecv.BASE).read_bytes()
    assert set(syncrecv.manifest_answer(str(root))["files"]) == {"a.py", "b.py"}
    assert (root / ".devloop" / syncrecv.BASE).read_bytes() == base


# -- the receiver's own tar parser (TarReader): long names, GNU records, padding, damage ---------

LONG_DIR = "/".join("segment%02d" % i for i in range(12))  # 131 bytes: past ustar's 100-byte name
LONG_PATH = LONG_DIR + "/file.py"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def at(mtime_s, data=b"", mode=0o644, link=None, digest="h"):
    """A control entry with its own mtime (so a rewrite changes what the record verifies)."""
    return [len(data), mtime_s * 1_000_000_000, mode, digest, link]


def tmp_names(root):
    return [p for p in listing(root) if "devloop-tmp" in p]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT],
                         ids=["pax", "gnu", "ustar"])
def test_long_paths_arrive_whole(tmp_path, fmt):
    """A path over 100 bytes comes as a PAX 'path' record, a GNU 'L' record or (ustar) a
    prefix field: the file lands at the full path, not at the truncated header name."""
    root = tmp_path / "wd"
    assert len(LONG_PATH.encode()) > 100
    ents = {LONG_PATH: entry(b"deep"), "short.py": entry(b"s")}
    res = syncrecv.receive(str(root), tar_stream(control(ents, full=True),
                                                 [(LONG_PATH, b"deep"), ("short.py", b"s")], fmt=fmt))
    assert res["ok"] and res["files"] == 2
    assert (root / LONG_PATH).read_bytes() == b"deep" and (root / "short.py").read_bytes() == b"s"
    assert listing(root) - {".devloop/manifest.json"} == {LONG_PATH, "short.py"}
    assert set(syncrecv.load_stored(str(root))) == set(ents)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_long_symlink_targets_arrive_whole(tmp_path, fmt):
    """A link target over 100 bytes (PAX 'linkpath' / GNU 'K' record) is matched against the
    control record whole and written whole; a long link name at the same time too."""
    root = tmp_path / "wd"
    target = LONG_PATH
    long_link = LONG_DIR + "/other/link-to-file.py"
    ents = {LONG_PATH: entry(b"deep"), "l.py": entry(link=target),
            long_link: entry(link="../file.py")}
    members = [(LONG_PATH, b"deep"), ("l.py", None, target), (long_link, None, "../file.py")]
    res = syncrecv.receive(str(root), tar_stream(control(ents, full=True), members, fmt=fmt))
    assert res["ok"] and res["files"] == 3
    assert os.readlink(root / "l.py") == target and (root / "l.py").read_bytes() == b"deep"
    assert os.readlink(root / long_link) == "../file.py" and (root / long_link).read_bytes() == b"deep"
    assert syncrecv.load_stored(str(root))["l.py"][4] == target


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_non_ascii_names(tmp_path, fmt):
    """UTF-8 names (PAX writes them as a 'path' record, GNU raw in the header) keep their name."""
    root = tmp_path / "wd"
    names = ["données/é.py", "日本語.txt", "emoji-🙂/x"]
    ents = {n: entry(n.encode()) for n in names}
    res = syncrecv.receive(str(root), tar_stream(control(ents, full=True), [(n, n.encode()) for n in names],
                                                 fmt=fmt))
    assert res["files"] == 3
    for n in names:
        assert (root / n).read_bytes() == n.encode()
    assert set(syncrecv.load_stored(str(root))) == set(names)


def test_empty_files_and_padding_edges_through_the_bundle(tmp_path):
    """Sizes at the 512-byte block and 1 MiB read-chunk edges (0, 1, 511, 512, 513, 1 MiB,
    1 MiB + 1) through the real `receive` subprocess: every byte lands, none of the padding,
    and the member after each is still found."""
    root = tmp_path / "wd"
    mib = syncrecv.CHUNK
    sizes = {"e0": 0, "e1": 1, "e511": 511, "e512": 512, "e513": 513, "m": mib, "m1": mib + 1, "z": 0}
    data = {name: os.urandom(n) for name, n in sizes.items()}
    ents = {name: entry(d) for name, d in data.items()}
    ents["after"] = entry(link="m1")
    members = [(name, d) for name, d in data.items()] + [("after", None, "m1")]
    stream = tar_stream(control(ents, full=True), members).getvalue()
    bundle = write_bundle(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(bundle), "receive", str(root)], input=stream, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"ok": True, "files": 9, "bytes": sum(sizes.values()), "deleted": 0}
    for name, d in data.items():
        assert (root / name).read_bytes() == d, name
    assert os.readlink(root / "after") == "m1"
    stored = syncrecv.load_stored(str(root))
    assert {n: stored[n][5] for n in data} == sizes  # the stat the record verifies against


def test_headers_and_data_split_across_frames(tmp_path):
    """The kept receiver reads a sync out of frames that end anywhere: headers, data and padding
    split between frames (777 bytes each) still make the same files."""
    root = tmp_path / "wd"
    data = {"a": os.urandom(1000), "b": b"", "c": os.urandom(512), "d": os.urandom(3000), LONG_PATH: b"x"}
    ents = {n: entry(d) for n, d in data.items()}
    stream = tar_stream(control(ents, full=True), list(data.items())).getvalue()
    framed = b"".join(len(stream[i:i + 777]).to_bytes(4, "big") + stream[i:i + 777]
                      for i in range(0, len(stream), 777)) + b"\0\0\0\0"
    bundle = write_bundle(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(bundle), "receive", str(root), "--serve"], input=framed,
                         capture_output=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"] == 5
    for name, d in data.items():
        assert (root / name).read_bytes() == d, name


def _header_offset(stream, name):
    """Offset of the (short-named) member header `name` in a tar stream."""
    want = name.encode() + b"\0"
    for off in range(0, len(stream), 512):
        if stream[off:off + len(want)] == want:
            return off
    raise AssertionError("no header for %r" % name)


def _second_sync_over_v1(root):
    """Sync v1 of a.py, b.py, c.py (full record); return the bytes of a v2 stream (other sizes
    and mtimes) and the record files as they are after v1."""
    v1 = {"a.py": b"a1", "b.py": b"b1" * 2000, "c.py": b"c1"}
    syncrecv.receive(str(root), tar_stream(control({n: at(1, d) for n, d in v1.items()}, full=True),
                                           list(v1.items())))
    v2 = {"a.py": b"a2-longer", "b.py": b"B" * 5000, "c.py": b"c2-longer"}
    stream = tar_stream(control({n: at(2, d) for n, d in v2.items()}), list(v2.items())).getvalue()
    state = {p.name: p.read_bytes() for p in (root / ".devloop").iterdir()}
    return v1, v2, stream, state


def test_corrupted_header_checksum_is_a_damaged_answer(tmp_path):
    """A header whose checksum does not add up (here b.py's size field, the corruption that would
    desync the stream) answers `the sync stream is damaged`. Exactly: members before it were
    already renamed into place (a.py is v2), nothing from it on is written (b.py, c.py stay v1),
    no temp file is left, and the stored record is not touched, so it never claims the damaged
    member nor the rewritten a.py (whose stat no longer matches the record)."""
    root = tmp_path / "wd"
    v1, v2, stream, state = _second_sync_over_v1(root)
    off = _header_offset(stream, "b.py")
    bad = bytearray(stream)
    bad[off + 124 + 5] ^= 0x01  # one octal digit of the size field
    bundle = write_bundle(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(bundle), "receive", str(root)], input=bytes(bad), capture_output=True)
    answer = json.loads(out.stdout)
    assert out.returncode == 1
    assert answer["ok"] is False
    assert answer["error"].startswith("the sync stream is damaged:") and "checksum" in answer["error"]
    assert (root / "a.py").read_bytes() == v2["a.py"]
    assert (root / "b.py").read_bytes() == v1["b.py"] and (root / "c.py").read_bytes() == v1["c.py"]
    assert tmp_names(root) == []
    assert {p.name: p.read_bytes() for p in (root / ".devloop").iterdir()} == state
    claimed = syncrecv.manifest_answer(str(root))["files"]
    assert set(claimed) == {"b.py", "c.py"} and claimed["b.py"][:4] == at(1, v1["b.py"])[:4]


def test_corrupted_first_header_writes_nothing(tmp_path):
    """Damage in the control record's own header: nothing is written, no record appears."""
    root = tmp_path / "wd"
    stream = bytearray(tar_stream(control({"a.py": entry(b"1")}, full=True), [("a.py", b"1")]).getvalue())
    stream[0] ^= 0x20
    with pytest.raises(syncrecv.Damaged, match="checksum"):
        syncrecv.receive(str(root), io.BytesIO(bytes(stream)))
    assert listing(root) == set() and syncrecv.load_stored(str(root)) is None


@pytest.mark.parametrize("where", ["small file data", "big file data", "padding", "next header"])
def test_stream_cut_inside_a_member_keeps_the_old_file(tmp_path, where):
    """A stream that ends inside a member (the sender died) is refused: the file being written
    keeps its old content, no `.devloop-tmp-*` file is left, the record is not touched. Members
    finished before the cut are in place (a.py); their changed stat keeps them unclaimed."""
    root = tmp_path / "wd"
    v1, v2, stream, state = _second_sync_over_v1(root)
    if where == "big file data":  # b.py over the 1 MiB read chunk, cut after the first chunk
        v2["b.py"] = os.urandom(syncrecv.CHUNK + 5000)
        stream = tar_stream(control({n: at(2, d) for n, d in v2.items()}), list(v2.items())).getvalue()
    data_at = _header_offset(stream, "b.py") + 512
    cut = {"small file data": data_at + 2500, "big file data": data_at + syncrecv.CHUNK + 100,
           "padding": data_at + 5000 + 50, "next header": _header_offset(stream, "c.py") + 200}[where]
    bundle = write_bundle(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(bundle), "receive", str(root)], input=stream[:cut],
                         capture_output=True)
    answer = json.loads(out.stdout)
    assert out.returncode == 1 and answer["ok"] is False
    if where == "next header":
        assert "damaged" in answer["error"] and "early" in answer["error"]
        assert (root / "b.py").read_bytes() == v2["b.py"]
    else:
        assert "ended inside" in answer["error"]
        assert (root / "b.py").read_bytes() == v1["b.py"]
    if where in ("small file data", "big file data"):
        assert answer["error"] == "the sync stream ended inside 'b.py'"
    assert (root / "a.py").read_bytes() == v2["a.py"] and (root / "c.py").read_bytes() == v1["c.py"]
    assert tmp_names(root) == []
    assert {p.name: p.read_bytes() for p in (root / ".devloop").iterdir()} == state
    assert "a.py" not in syncrecv.manifest_answer(str(root))["files"]


# -- the hashes trailer: hashes the sender computed while sending ------------------------------

def test_hashes_trailer_fills_the_record(tmp_path):
    """Entries announced with sha256 "" get the hash the `.devloop/hashes.json` member names;
    one the trailer does not name keeps ""; one announced with a hash keeps it; a trailer path
    not in the control record is ignored (no entry, no file); the trailer is never written."""
    root = tmp_path / "wd"
    files = {"a.py": b"alpha", "b.py": b"beta", "c.py": b"gamma"}
    ents = {"a.py": at(1, files["a.py"], digest=""), "b.py": at(1, files["b.py"], digest=""),
            "c.py": at(1, files["c.py"], digest=sha(b"gamma"))}
    trailer = {"a.py": sha(b"alpha"), "c.py": "0" * 64, "ghost.py": sha(b"ghost")}
    members = [*files.items(), (syncrecv.HASHES_NAME, json.dumps(trailer).encode())]
    res = syncrecv.receive(str(root), tar_stream(control(ents, full=True), members))
    assert res == {"ok": True, "files": 3, "bytes": 14, "deleted": 0}
    stored = syncrecv.load_stored(str(root))
    assert {rel: rec[3] for rel, rec in stored.items()} == {"a.py": sha(b"alpha"), "b.py": "", "c.py": sha(b"gamma")}
    assert listing(root) == {"a.py", "b.py", "c.py", ".devloop/manifest.json"}
    assert syncrecv.manifest_answer(str(root))["files"]["a.py"][3] == sha(b"alpha")


def test_hashes_trailer_in_a_delta_sync_goes_to_the_journal(tmp_path):
    """A later (appended) sync fills hashes the same way; the record read back has them."""
    root = tmp_path / "wd"
    syncrecv.receive(str(root), tar_stream(control({"a.py": at(1, b"1")}, full=True), [("a.py", b"1")]))
    trailer = json.dumps({"n.py": sha(b"new")}).encode()
    syncrecv.receive(str(root), tar_stream(control({"n.py": at(2, b"new", digest="")}),
                                           [("n.py", b"new"), (syncrecv.HASHES_NAME, trailer)]))
    assert syncrecv.load_stored(str(root))["n.py"][3] == sha(b"new")
    assert not (root / ".devloop" / "hashes.json").exists()


def test_hashes_trailer_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(syncrecv.Refused, match="not a mapping"):
        syncrecv.receive(str(tmp_path / "wd"), tar_stream(control({"a.py": at(1, b"1", digest="")}, full=True),
                                                          [("a.py", b"1"), (syncrecv.HASHES_NAME, b"[1]")]))


@pytest.mark.parametrize("dangling", [False, True], ids=["existing-target", "dangling"])
def test_never_writes_through_a_link_planted_at_the_temp_name(tmp_path, dangling, capsys):
    """The receiver's first temp file in a folder is `.devloop-tmp-<pid>-1` (in-process: this
    pid). A symlink planted there, pointing outside the workdir, is never written through
    (O_EXCL|O_NOFOLLOW): the outside file keeps its content, a dangling link's target is never
    created; the receiver takes the next temp name and the sync succeeds."""
    root = tmp_path / "wd"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    if not dangling:
        outside.write_bytes(b"secret")
    planted = root / "sub" / (".devloop-tmp-%d-1" % os.getpid())
    os.symlink(outside, planted)
    answer = syncrecv._receive_answer(str(root), tar_stream(control({"sub/a.py": entry(b"new")}),
                                                            [("sub/a.py", b"new")]))
    assert json.loads(capsys.readouterr().out) == answer
    if dangling:
        assert not os.path.lexists(outside)
    else:
        assert outside.read_bytes() == b"secret"
    assert answer["ok"], answer
    assert (root / "sub/a.py").read_bytes() == b"new" and not os.path.islink(root / "sub/a.py")
    assert os.path.islink(planted)  # left alone


def test_a_stale_temp_file_from_a_killed_receiver_does_not_block_the_sync(tmp_path):
    """A receiver killed mid-write (a cancelled sync: the sender SIGKILLs its process group)
    leaves its temp file; a later receiver with the same pid (pids restart in a fresh container)
    must still sync (before fb9126e the name was simply overwritten)."""
    root = tmp_path / "wd"
    root.mkdir()
    (root / (".devloop-tmp-%d-1" % os.getpid())).write_bytes(b"half a file")
    res = syncrecv.receive(str(root), tar_stream(control({"a.py": entry(b"1")}), [("a.py", b"1")]))
    assert res["ok"] and (root / "a.py").read_bytes() == b"1"
