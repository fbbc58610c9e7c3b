"""The agent's receiver against hand-made tar streams: what it writes, what it refuses.

Driven in-process (devloop.agent.syncrecv.receive) for the refusals, and once through the real
agent bundle in a subprocess."""

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from devloop.agent import syncrecv
from devloop.core.agent_bundle import write_bundle


def tar_stream(control, members=()):
    """members: (name, bytes) for files, (name, None, linktarget) for symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tf:
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
    with pytest.raises(syncrecv.Refused, match="outside the workdir"):
        syncrecv.receive(str(root), tar_stream(control({"data/x": entry(b"1")}), [("data/x", b"1")]))
    assert list(outside.iterdir()) == []


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
