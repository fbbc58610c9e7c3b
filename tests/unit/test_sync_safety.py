"""Sync never writes outside the workdir and never loses data silently (issue 21, items 1-6).

Through the real `devloop sync` CLI on a `local` profile with `workdir:` (it syncs exactly as a
remote target does: the agent's receiver in its own process), and in-process against the
receiver (devloop.agent.syncrecv) where a case needs a hand-made stream or a fault."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from devloop.agent import syncrecv
from devloop.core.agent_bundle import write_bundle
from devloop.core.config import load_config
from devloop.core.sync.manifest import IgnoreRules, Scanner, UnreadablePath
from devloop.core.sync.plan import plan_sync
from devloop.core.sync.transport import _tar_pieces, fetch_remote_manifest, sync_via_agent
from devloop.core.targets.local import LocalTarget
from tests.clitools import devloop


# -- helpers -----------------------------------------------------------------------------------

def project(base: Path) -> tuple[Path, Path]:
    proj, wd = base / "proj", base / "wd"
    (proj / "profiles").mkdir(parents=True)
    (proj / "profiles" / "mirror.yaml").write_text(f"kind: local\nworkdir: {wd}\n")
    return proj, wd


def sync(proj: Path, **kw) -> subprocess.CompletedProcess:
    return devloop("sync", "--profile", "mirror", cwd=proj, **kw)


def snapshot(folder: Path) -> dict:
    """Everything under `folder` (links not followed): kind, content or target, mode, mtime."""
    out = {}
    for d, dirs, files in os.walk(folder):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if os.path.islink(p):
                out[os.path.relpath(p, folder)] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[os.path.relpath(p, folder)] = ("dir", st.st_mode)
            else:
                with open(p, "rb") as f:
                    out[os.path.relpath(p, folder)] = ("file", f.read(), st.st_mode, st.st_mtime_ns)
    return out


def stream(control: dict, members=()) -> io.BytesIO:
    """A sync tar stream: members (name, bytes) for files, (name, None, target) for links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        data = json.dumps(control).encode()
        info = tarfile.TarInfo(syncrecv.CONTROL_NAME)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        for m in members:
            info = tarfile.TarInfo(m[0])
            if m[1] is None:
                info.type, info.linkname = tarfile.SYMTYPE, m[2]
                tf.addfile(info)
            else:
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    buf.seek(0)
    return buf


def ent(data=b"", mode=0o644, link=None, mtime_s=1_700_000_000):
    return [len(data), mtime_s * 1_000_000_000, mode, "h", link]


def ctl(entries, deletes=(), full=False, chmod=None):
    return {"v": 1, "full": full, "entries": entries, "deletes": list(deletes), "chmod": chmod or {}}


# -- 1. a folder the target replaced by a symlink is a leaf ----------------------------------------

def test_a_folder_the_target_made_a_symlink_is_never_entered(tmp_path):
    """The issue's case: after a sync, data/ moves to a bigger disk on the target and a link
    takes its place. Locally a.txt is deleted, b.txt made executable, c.txt added, and another
    file edited: the sync succeeds for the rest, and nothing under the link's target changes."""
    proj, wd = project(tmp_path)
    (proj / "data").mkdir()
    (proj / "data" / "a.txt").write_text("a")
    (proj / "data" / "b.txt").write_text("b")
    (proj / "main.py").write_text("v1")
    assert sync(proj).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(wd / "data"), str(elsewhere))
    os.symlink(elsewhere, wd / "data")
    before = snapshot(elsewhere)
    (proj / "data" / "a.txt").unlink()
    os.chmod(proj / "data" / "b.txt", 0o755)
    (proj / "data" / "c.txt").write_text("c")
    (proj / "main.py").write_text("v2")
    res = sync(proj)
    assert res.returncode == 0, res.stderr
    assert snapshot(elsewhere) == before
    assert os.readlink(wd / "data") == str(elsewhere)
    assert (wd / "main.py").read_text() == "v2"
    said = res.stdout + res.stderr
    assert "data/ is a symlink on the target" in said  # the user is told, with the path
    assert sync(proj).returncode == 0 and snapshot(elsewhere) == before  # and again


def test_the_leaf_is_reported_once_with_its_path_and_the_record_kept(tmp_path):
    root, elsewhere = tmp_path / "wd", tmp_path / "elsewhere"
    files = {"data/a.txt": b"a", "data/b.txt": b"b", "top.py": b"t"}
    syncrecv.receive(str(root), stream(ctl({k: ent(v) for k, v in files.items()}, full=True), files.items()))
    shutil.move(str(root / "data"), str(elsewhere))
    os.symlink(elsewhere, root / "data")
    before = snapshot(elsewhere)
    res = syncrecv.receive(str(root), stream(
        ctl({"data/b.txt": ent(b"b", 0o755), "data/c.txt": ent(b"c"), "data/sub/d.txt": ent(b"d"),
             "top.py": ent(b"t2")}, deletes=["data/a.txt"], chmod={"data/b.txt": 0o755}),
        [("data/c.txt", b"c"), ("data/sub/d.txt", b"d"), ("top.py", b"t2")]))
    assert snapshot(elsewhere) == before
    assert res["ok"] and res["files"] == 1 and res["deleted"] == 0
    assert res["warnings"] == [res["warnings"][0]] and res["warnings"][0].startswith(
        "data/ is a symlink on the target (-> %s)" % elsewhere)
    assert "4 paths under it" in res["warnings"][0]
    stored = syncrecv.load_stored(str(root))
    assert stored["data/a.txt"][:3] == ent(b"a")[:3] and "data/c.txt" not in stored


def test_a_file_in_the_way_refuses_before_anything_is_done(tmp_path):
    """The whole plan is checked first: a refusal (a file the target made where a folder must
    go) comes before the deletes and mode changes, so the target is exactly as it was."""
    root = tmp_path / "wd"
    files = {"old.py": b"o", "run.sh": b"r"}
    syncrecv.receive(str(root), stream(ctl({k: ent(v) for k, v in files.items()}, full=True), files.items()))
    (root / "pkg").write_text("the target's own file")
    before = snapshot(root)
    with pytest.raises(syncrecv.Refused, match="'pkg'.*in the way"):
        syncrecv.receive(str(root), stream(ctl({"pkg/m.py": ent(b"m"), "run.sh": ent(b"r", 0o755)},
                                               deletes=["old.py"], chmod={"run.sh": 0o755}),
                                           [("pkg/m.py", b"m")]))
    assert snapshot(root) == before


def test_a_folder_link_raced_in_during_the_sync_is_not_written_through(tmp_path):
    """A folder swapped for a link after the check: the write goes nowhere through it."""
    root, outside = tmp_path / "wd", tmp_path / "outside"
    outside.mkdir()
    syncrecv.receive(str(root), stream(ctl({"d/x": ent(b"1")}, full=True), [("d/x", b"1")]))
    tree = syncrecv.Tree(str(root))
    try:
        shutil.rmtree(root / "d")
        os.symlink(outside, root / "d")
        with pytest.raises(syncrecv.Leaf):
            tree.dir_fd("d", create=True)
    finally:
        tree.close()
    assert list(outside.iterdir()) == []


# -- 2. devloop's own state never follows planted links --------------------------------------------

def test_a_symlinked_manifest_log_is_refused_and_its_target_untouched(tmp_path):
    proj, wd = project(tmp_path)
    (proj / "a.py").write_text("1")
    assert sync(proj).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    log = wd / ".devloop" / "manifest.log"
    if log.exists():
        log.unlink()
    os.symlink(victim, log)
    (proj / "a.py").write_text("2")
    res = sync(proj)
    assert res.returncode != 0
    assert str(log) in res.stdout + res.stderr and "symlink" in res.stdout + res.stderr
    assert victim.read_text() == "precious"


def test_a_symlinked_state_folder_before_the_first_sync_is_refused(tmp_path):
    proj, wd = project(tmp_path)
    (proj / "a.py").write_text("1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wd.mkdir()
    os.symlink(elsewhere, wd / ".devloop")
    res = sync(proj)
    assert res.returncode != 0
    assert str(wd / ".devloop") in res.stdout + res.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_state_folder_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown the state folder to another user")
    root = tmp_path / "wd"
    (root / ".devloop").mkdir(parents=True)
    os.chown(root / ".devloop", 65534, 65534)
    with pytest.raises(syncrecv.Refused, match="belongs to uid 65534"):
        syncrecv.receive(str(root), stream(ctl({"a.py": ent(b"1")}, full=True), [("a.py", b"1")]))
    assert not (root / "a.py").exists()


def test_the_state_folder_is_made_private(tmp_path):
    root = tmp_path / "wd"
    syncrecv.receive(str(root), stream(ctl({"a.py": ent(b"1")}, full=True), [("a.py", b"1")]))
    assert os.stat(root / ".devloop").st_mode & 0o777 == 0o700


def test_a_link_at_the_old_predictable_record_temp_name_is_not_written_through(tmp_path):
    root, victim = tmp_path / "wd", tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / ".devloop").mkdir(parents=True, mode=0o700)
    os.symlink(victim, root / ".devloop" / ("manifest.json.%d.tmp" % os.getpid()))
    res = syncrecv.receive(str(root), stream(ctl({"a.py": ent(b"1")}, full=True), [("a.py", b"1")]))
    assert res["ok"] and victim.read_text() == "precious"
    assert set(syncrecv.load_stored(str(root))) == {"a.py"}
    assert not os.path.islink(root / ".devloop" / "manifest.json")


# -- 3. link chains ---------------------------------------------------------------------------

def test_a_link_that_escapes_in_two_steps_is_refused(tmp_path):
    proj, wd = project(tmp_path)
    (proj / "a.py").write_text("1")
    os.symlink(".", proj / "s")
    os.symlink("s/..", proj / "esc")
    res = sync(proj)
    assert res.returncode != 0 and "'esc'" in res.stdout + res.stderr
    assert not os.path.lexists(wd / "esc")


@pytest.mark.parametrize("links, ok", [
    ({"s": ".", "esc": "s/.."}, False),
    ({"a/up": "..", "a/esc": "up/.."}, False),
    ({"loop1": "loop2/x", "loop2": "loop1/x"}, False),
    ({"a/b": "../c", "c": "d", "e": "a/b/.."}, True),   # e -> a/b/.. == c/.. == ROOT: inside
    ({"x": "a/b", "a/b": "../c/.."}, True),
])
def test_link_chains_are_resolved_before_any_is_written(tmp_path, links, ok):
    root = tmp_path / "wd"
    ents = {k: ent(link=v) for k, v in links.items()}
    members = [(k, None, v) for k, v in links.items()]
    if ok:
        assert syncrecv.receive(str(root), stream(ctl(ents, full=True), members))["ok"]
    else:
        with pytest.raises(syncrecv.Refused, match="leaves the workdir|loop"):
            syncrecv.receive(str(root), stream(ctl(ents, full=True), members))
        assert [p for p in root.rglob("*") if p.name != ".devloop"] == []


def test_a_chain_through_a_link_already_on_the_target_is_refused(tmp_path):
    """`s -> .` synced earlier (or made on the target): a later `esc -> s/..` alone is refused."""
    root = tmp_path / "wd"
    syncrecv.receive(str(root), stream(ctl({"s": ent(link=".")}, full=True), [("s", None, ".")]))
    with pytest.raises(syncrecv.Refused, match="'esc'.*leaves the workdir.*through the link 's'"):
        syncrecv.receive(str(root), stream(ctl({"esc": ent(link="s/..")}), [("esc", None, "s/..")]))
    os.symlink(".", root / "t")  # the target's own
    with pytest.raises(syncrecv.Refused, match="leaves the workdir"):
        syncrecv.receive(str(root), stream(ctl({"esc": ent(link="t/..")}), [("esc", None, "t/..")]))
    assert not os.path.lexists(root / "esc")


# -- 4. a file gone or changed between the scan and the send ---------------------------------------

def local_target(proj: Path, wd: Path):
    (proj / "profiles").mkdir(parents=True, exist_ok=True)
    (proj / "profiles" / "wd.yaml").write_text(f"kind: local\nworkdir: {wd}\n")
    config = load_config(proj)
    return LocalTarget(config.profile("wd"), config)


@pytest.mark.parametrize("hash_new", [True, False], ids=["hashed", "hashed-on-the-way"])
async def test_a_file_deleted_between_scan_and_send_is_not_recorded(tmp_path, hash_new):
    """Not sent (was: sent empty, recorded as whole, 'up to date' for ever); once restored with
    the same content, the next sync sends it."""
    proj, wd = tmp_path / "proj", tmp_path / "wd"
    proj.mkdir()
    (proj / "a.py").write_bytes(b"alpha")
    (proj / "b.py").write_bytes(b"beta")
    target = local_target(proj, wd)
    await target.start()
    try:
        scanner = Scanner(proj, IgnoreRules.load(proj, ()))
        plan = plan_sync(None, scanner.scan(hash_new=hash_new))
        (proj / "a.py").unlink()
        stats = await sync_via_agent(target, plan, str(proj))
        assert stats.files == len(plan.copies) - 1 and not (wd / "a.py").exists()
        remote = await fetch_remote_manifest(target)
        assert "a.py" not in remote and "b.py" in remote
        (proj / "a.py").write_bytes(b"alpha")
        plan2 = plan_sync(remote, scanner.scan())
        assert "a.py" in plan2.copies
        await sync_via_agent(target, plan2, str(proj))
        assert (wd / "a.py").read_bytes() == b"alpha"
    finally:
        await target.stop()


async def test_a_hashed_file_changed_before_it_is_sent_is_not_claimed(tmp_path):
    """Scanned (hashed) as v1, rewritten as v2 before the send: v2 arrives but the record does
    not claim v1's hash for it, so when the file goes back to v1 the next sync sends v1."""
    proj, wd = tmp_path / "proj", tmp_path / "wd"
    proj.mkdir()
    (proj / "a.py").write_bytes(b"version-1")
    target = local_target(proj, wd)
    await target.start()
    try:
        scanner = Scanner(proj, IgnoreRules.load(proj, ()))
        v1 = scanner.scan()
        plan = plan_sync(None, v1)
        st = os.stat(proj / "a.py")
        (proj / "a.py").write_bytes(b"version-2")
        os.utime(proj / "a.py", ns=(st.st_mtime_ns + 10**9,) * 2)
        await sync_via_agent(target, plan, str(proj))
        assert (wd / "a.py").read_bytes() == b"version-2"
        remote = await fetch_remote_manifest(target)
        assert "a.py" not in remote or remote["a.py"].sha256 != v1["a.py"].sha256
        (proj / "a.py").write_bytes(b"version-1")
        plan2 = plan_sync(remote, scanner.scan())
        await sync_via_agent(target, plan2, str(proj))
        assert (wd / "a.py").read_bytes() == b"version-1"
    finally:
        await target.stop()


def test_a_file_that_shrinks_while_read_is_named_in_the_unsent_trailer(tmp_path):
    """The sender's pieces for a big file that is cut while it is read: the bytes are padded
    (the header announced the size), and the file is named in `.devloop/unsent.json`."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "big.bin").write_bytes(os.urandom(3 << 20))
    scanner = Scanner(proj, IgnoreRules.load(proj, ()))
    plan = plan_sync(None, scanner.scan())
    pieces = _tar_pieces(plan, str(proj), True, {})
    out = [next(pieces), next(pieces), next(pieces)]  # control, header, first MiB
    os.truncate(proj / "big.bin", 1000)
    out += list(pieces)
    data = b"".join(p for p, _, _ in out)
    assert b".devloop/unsent.json" in data and b'["big.bin"]' in data
    root = tmp_path / "wd"
    res = syncrecv.receive(str(root), io.BytesIO(data))
    assert res["ok"]
    assert "big.bin" not in syncrecv.manifest_answer(str(root))["files"]


# -- 5. an unreadable path is an error, never empty or absent --------------------------------------

def sync_unprivileged(proj: Path) -> subprocess.CompletedProcess:
    """`devloop sync` where chmod 000 stops reads: as root, without the capabilities that let
    root read anything (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; the files are root's, so the
    permission bits apply), via util-linux `setpriv`."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: chmod 000 cannot stop reads here")
        prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return subprocess.run(prefix + [sys.executable, "-m", "devloop.cli", "sync", "--profile", "mirror"],
                          cwd=proj, env=env, capture_output=True, text=True, timeout=60)


def test_an_unreadable_file_is_an_error_naming_it_not_an_empty_copy(tmp_path):
    proj, wd = project(tmp_path)
    (proj / "a.py").write_text("1")
    (proj / "secret.bin").write_bytes(b"payload")
    os.chmod(proj / "secret.bin", 0)
    res = sync_unprivileged(proj)
    assert res.returncode != 0, res.stdout
    assert "secret.bin" in res.stderr + res.stdout and "fix:" in res.stderr + res.stdout
    assert not (wd / "secret.bin").exists()


def test_an_unreadable_synced_file_or_folder_keeps_the_targets_copy(tmp_path):
    proj, wd = project(tmp_path)
    (proj / "data").mkdir()
    (proj / "data" / "x.txt").write_text("x" * 100)
    (proj / "y.txt").write_text("y" * 100)
    res = sync_unprivileged(proj)
    assert res.returncode == 0, res.stderr
    os.chmod(proj / "y.txt", 0)
    res = sync_unprivileged(proj)
    assert res.returncode != 0 and "y.txt" in res.stderr + res.stdout
    assert (wd / "y.txt").read_text() == "y" * 100
    os.chmod(proj / "y.txt", 0o644)
    os.chmod(proj / "data", 0)
    try:
        res = sync_unprivileged(proj)
    finally:
        os.chmod(proj / "data", 0o755)
    assert res.returncode != 0 and "data" in res.stderr + res.stdout
    assert (wd / "data" / "x.txt").read_text() == "x" * 100


def test_the_scanner_raises_for_an_unreadable_folder(tmp_path):
    """In-process, for any user: a folder that cannot be listed (here: its name is a file
    under a name that is a file, ENOTDIR would be 'gone'; EACCES/EIO are errors). Without a
    way to make EACCES as root, this drives the same branch with a path whose listing fails
    with ELOOP (a folder path through a symlink loop)."""
    (tmp_path / "ok.py").write_text("1")
    scanner = Scanner(tmp_path, IgnoreRules.load(tmp_path, ()))
    scanner.scan()
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(UnreadablePath, match="loop"):
        scanner.update(["loop/x.py"])


# -- 6. what a killed receiver or a failed write leaves --------------------------------------------

def test_a_killed_receivers_temp_file_is_removed_by_the_next_sync(tmp_path):
    root = tmp_path / "wd"
    syncrecv.receive(str(root), stream(ctl({"keep.py": ent(b"k")}, full=True), [("keep.py", b"k")]))
    (root / "sub").mkdir()
    (root / "sub" / ".devloop-tmp-notes.txt").write_text("the user's")  # not devloop's pattern
    (root / ".devloop-tmp-999999999-1").write_text("no note names it")  # no inflight note: kept
    big = os.urandom(4 << 20)
    data = stream(ctl({"sub/big.bin": ent(big)}), [("sub/big.bin", big)]).getvalue()
    bundle = write_bundle(tmp_path / "cache")
    proc = subprocess.Popen([sys.executable, str(bundle), "receive", str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    proc.stdin.write(data[: 2 << 20])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    tmp_name = ".devloop-tmp-%d-1" % proc.pid
    while not (root / "sub" / tmp_name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (root / "sub" / tmp_name).exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert (root / "sub" / tmp_name).exists() and (root / ".devloop" / ("inflight.%d" % proc.pid)).exists()
    res = syncrecv.receive(str(root), stream(ctl({"b.py": ent(b"b")}), [("b.py", b"b")]))
    assert res["ok"]
    assert not (root / "sub" / tmp_name).exists()
    assert not (root / ".devloop" / ("inflight.%d" % proc.pid)).exists()
    assert (root / "sub" / ".devloop-tmp-notes.txt").read_text() == "the user's"
    assert (root / ".devloop-tmp-999999999-1").exists()
    assert sorted(os.listdir(root / ".devloop")) == ["manifest.json", "manifest.log"]


def test_a_stale_record_temp_file_of_a_gone_receiver_is_removed(tmp_path):
    root = tmp_path / "wd"
    (root / ".devloop").mkdir(parents=True, mode=0o700)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    for name in ("manifest.json.%s.tmp" % dead, "manifest.json.%s-0123456789abcdef.tmp" % dead):
        (root / ".devloop" / name).write_text("{half")
    syncrecv.receive(str(root), stream(ctl({"a.py": ent(b"1")}, full=True), [("a.py", b"1")]))
    assert os.listdir(root / ".devloop") == ["manifest.json"]


def _fsize_limit(limit):
    def apply():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_record_write_leaves_no_temp_file_and_names_the_path(tmp_path):
    """The record is bigger than the file size limit (EFBIG, as a full disk fails it): the
    answer names .devloop/manifest.json and no manifest.json.*.tmp stays behind."""
    root = tmp_path / "wd"
    files = {"f%03d.py" % i: b"x" for i in range(100)}
    data = stream(ctl({k: ent(v) for k, v in files.items()}, full=True), files.items()).getvalue()
    bundle = write_bundle(tmp_path / "cache")
    out = subprocess.run([sys.executable, str(bundle), "receive", str(root)], input=data, capture_output=True,
                         preexec_fn=_fsize_limit(4000))
    answer = json.loads(out.stdout)
    assert answer["ok"] is False and str(root / ".devloop" / "manifest.json") in answer["error"]
    assert os.listdir(root / ".devloop") == []


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): the disk-full message is not tested")
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_disk_full_names_the_path(tmp_path, tiny_disk):
    root = tiny_disk / "wd"
    big = os.urandom(1 << 20)
    with pytest.raises(syncrecv.Refused) as info:
        syncrecv.receive(str(root), stream(ctl({"a/big.bin": ent(big)}, full=True), [("a/big.bin", big)]))
    assert str(info.value).startswith("the target's disk is full: cannot write %s" % (root / "a" / "big.bin"))
    assert [n for n in os.listdir(root / "a") if n.startswith(".devloop-tmp")] == []


# -- property: whatever the target holds, nothing outside the workdir changes ----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAMES = st.sampled_from(["a", "b", "c"])
RELS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
LOCAL_EDITS = st.lists(st.one_of(
    st.tuples(st.just("write"), RELS, st.binary(max_size=40)),
    st.tuples(st.just("delete"), RELS),
    st.tuples(st.just("chmod"), RELS),
    st.tuples(st.just("link"), RELS, st.sampled_from([".", "..", "a", "../..", "a/..", "b/../..", "c/x"])),
), max_size=8)
TARGET_EDITS = st.lists(st.one_of(
    st.tuples(st.just("dir-to-outside"), RELS),   # a folder moved out, a link in its place
    st.tuples(st.just("link-outside"), RELS),     # a link to outside where a file or nothing was
    st.tuples(st.just("link-inside"), RELS, st.sampled_from([".", "..", "a", "b/c"])),
    st.tuples(st.just("file"), RELS),
    st.tuples(st.just("state-link"), st.sampled_from(["manifest.log", "manifest.json"])),
), max_size=5)


def _apply_local(proj: Path, edits) -> None:
    for edit in edits:
        path = proj / edit[1]
        try:
            if edit[0] == "write":
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink():
                    path.unlink()
                path.write_bytes(edit[2])
            elif edit[0] == "delete" and (path.is_symlink() or path.is_file()):
                path.unlink()
            elif edit[0] == "chmod" and path.is_file() and not path.is_symlink():
                os.chmod(path, os.stat(path).st_mode ^ 0o100)
            elif edit[0] == "link" and not os.path.lexists(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(edit[2], path)
        except OSError:  # a file where a folder is asked for, a link loop: skip that edit
            pass


def _apply_target(wd: Path, outside: Path, edits, n: int) -> None:
    for i, edit in enumerate(edits):
        try:
            if edit[0] == "state-link":
                path = wd / ".devloop" / edit[1]
                if os.path.lexists(path):
                    path.unlink()
                os.symlink(outside / "victim.txt", path)
                continue
            path = wd / edit[1]
            if edit[0] == "dir-to-outside" and path.is_dir() and not path.is_symlink():
                moved = outside / ("moved-%d-%d" % (n, i))
                shutil.move(str(path), str(moved))
                os.symlink(moved, path)
            elif edit[0] == "link-outside" and not path.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(path):
                    path.unlink()
                os.symlink(outside, path)
            elif edit[0] == "link-inside" and not os.path.lexists(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(edit[2], path)
            elif edit[0] == "file" and not os.path.lexists(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("the target's own")
        except OSError:  # a file where a folder is asked for, a link loop: skip that edit
            pass


def _sync_in_process(proj: Path, wd: Path, full: bool) -> None:
    """What `devloop sync` does, in one process: scan, ask the receiver's record, plan, send."""
    scanner = Scanner(proj, IgnoreRules.load(proj, ()))
    manifest = scanner.scan(hash_new=False)
    answer = syncrecv.manifest_answer(str(wd)) if wd.exists() else None
    from devloop.core.sync.manifest import manifest_from_json

    remote = manifest_from_json(answer["files"]) if answer else None
    scanner.hash_needed(remote)
    plan = plan_sync(remote, manifest)
    data = b"".join(p for p, _, _ in _tar_pieces(plan, str(proj), full, {}))
    try:
        syncrecv.receive(str(wd), io.BytesIO(data))
    except syncrecv.Refused:
        pass  # refusing is allowed; writing outside is not


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=LOCAL_EDITS, rounds=st.lists(st.tuples(TARGET_EDITS, LOCAL_EDITS), min_size=1, max_size=3))
def test_property_nothing_outside_the_workdir_changes(first, rounds):
    base = Path(tempfile.mkdtemp(prefix="devloop-prop-"))
    try:
        proj, wd, outside = base / "proj", base / "wd", base / "outside"
        proj.mkdir()
        outside.mkdir()
        (outside / "victim.txt").write_text("precious")
        (outside / "a").mkdir()
        (outside / "a" / "b").write_text("outside b")
        _apply_local(proj, first)
        _sync_in_process(proj, wd, full=True)
        for n, (target_edits, local_edits) in enumerate(rounds):
            wd.mkdir(exist_ok=True)
            _apply_target(wd, outside, target_edits, n)
            before = snapshot(outside)
            _apply_local(proj, local_edits)
            _sync_in_process(proj, wd, full=n % 2 == 1)
            assert snapshot(outside) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)
