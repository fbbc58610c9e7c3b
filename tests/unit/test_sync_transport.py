"""End to end through the real local target (a subprocess with stdin/stdout, the agent bundle's
receive mode): scan -> plan -> tar stream -> remote folder. Property tests with hypothesis."""

import asyncio
import os
import shutil
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devloop.core.config import load_config
from devloop.core.sync.manifest import IgnoreRules, Scanner
from devloop.core.sync.plan import plan_sync
from devloop.core.sync.transport import close_receiver, fetch_remote_manifest, sync_via_agent
from devloop.core.targets.base import TargetError
from devloop.core.targets.local import LocalTarget


def make_project(base, workdir, exclude=()):
    proj = base / "proj"
    (proj / "profiles").mkdir(parents=True, exist_ok=True)
    excl = ", ".join(f'"{p}"' for p in exclude)
    (proj / "devloop.toml").write_text(f'[project]\nname = "t"\n[sync]\nexclude = [{excl}]\n')
    (proj / "profiles" / "wd.yaml").write_text(f"kind: local\nworkdir: {workdir}\n")
    return proj


def target_for(proj):
    config = load_config(proj)
    return LocalTarget(config.profile("wd"), config), config


def tree(root):
    """{relpath: (kind, content/link, exec bit)} of everything under root except .devloop/."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".devloop" or d != str(root)]
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p), False)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read(), bool(os.stat(p).st_mode & 0o111))
    return out


async def sync_once(target, scanner, old, **kw):
    new = scanner.scan()
    plan = plan_sync(old, new)
    stats = await sync_via_agent(target, plan, scanner.root, **kw)
    return plan, stats


async def test_round_trip_remote_manifest_and_repair(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd, exclude=["*.log"])
    (proj / "pkg").mkdir()
    (proj / "pkg" / "m.py").write_text("x = 1\n")
    (proj / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(proj / "run.sh", 0o755)
    (proj / "train.log").write_text("ignored")
    os.symlink("pkg/m.py", proj / "m_link.py")
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    assert await fetch_remote_manifest(target) is None
    plan, stats = await sync_once(target, scanner, None)
    assert stats.files == len(plan.copies) == 5 and "train.log" not in tree(wd)
    assert tree(wd) == {k: v for k, v in tree(proj).items() if k != "train.log"}
    remote = await fetch_remote_manifest(target)
    assert remote == plan.new_manifest
    # a remote file edited and one lost: only those two are sent again
    (wd / "pkg" / "m.py").write_text("changed remotely")
    (wd / "run.sh").unlink()
    remote = await fetch_remote_manifest(target)
    plan2, stats2 = await sync_once(target, scanner, remote)
    assert set(plan2.copies) == {"pkg/m.py", "run.sh"} and stats2.files == 2
    assert tree(wd)["pkg/m.py"][1] == b"x = 1\n" and tree(wd)["run.sh"][2] is True
    # a restarted (emptied) workdir is repaired whole
    shutil.rmtree(wd)
    wd.mkdir()
    assert await fetch_remote_manifest(target) is None
    plan3, _ = await sync_once(target, scanner, None)
    assert len(plan3.copies) == 5 and (await fetch_remote_manifest(target)) == plan3.new_manifest


async def test_refusal_is_a_target_error_naming_the_link(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    os.symlink("/etc/hostname", proj / "escape")
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj))
    with pytest.raises(TargetError, match="'escape' -> '/etc/hostname'"):
        await sync_once(target, scanner, None)
    assert not (wd / "escape").exists()


async def test_kept_receiver_serves_many_syncs_and_progress(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    (proj / "big.bin").write_bytes(os.urandom(3 << 20))
    target, _ = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj))
    seen = []
    try:
        plan, _ = await sync_once(target, scanner, None, keep_open=True, on_progress=lambda *a: seen.append(a))
        assert seen and seen[-1][2] == seen[-1][3] == plan.bytes_total > 3 << 20
        old = plan.new_manifest
        for i in range(3):
            (proj / "a.py").write_text(f"v{i}")
            new = scanner.update(["a.py"])
            p = plan_sync(old, new)
            stats = await sync_via_agent(target, p, str(proj), keep_open=True)
            assert stats.files == 1 and (wd / "a.py").read_text() == f"v{i}"
            old = new
    finally:
        await close_receiver(target)
    assert await fetch_remote_manifest(target) == old


# -- property: after a sync the remote equals the local tree minus ignored files ---------------

NAMES = ["a.py", "b.txt", "c.log", "d.sh", "data.csv"]
DIRS = ["", "pkg", "pkg/sub", "out", "data"]
IGNORES = ["*.log", "out/", "!keep.log", "data/", "*.csv", "pkg/sub/", "!data.csv"]

paths = st.builds(lambda d, n: f"{d}/{n}" if d else n, st.sampled_from(DIRS), st.sampled_from(NAMES))
files = st.dictionaries(paths, st.tuples(st.binary(max_size=64), st.booleans()), max_size=12)
ignore_files = st.dictionaries(st.sampled_from(["", "pkg"]), st.lists(st.sampled_from(IGNORES), max_size=3),
                               max_size=2)
edits = st.lists(st.tuples(st.sampled_from(["write", "delete", "chmod"]), paths, st.binary(max_size=32)),
                 max_size=8)


def apply_files(proj, spec):
    for rel, (data, exe) in spec.items():
        p = proj / rel
        if p.is_dir():
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o755 if exe else 0o644)


def apply_edits(proj, edit_list):
    for op, rel, data in edit_list:
        p = proj / rel
        if p.is_dir():
            continue
        if op == "write":
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        elif op == "delete" and p.exists():
            p.unlink()
        elif op == "chmod" and p.exists():
            os.chmod(p, p.stat().st_mode ^ stat.S_IXUSR)


def content(manifest):
    return {k: (e.size, e.mode, e.sha256, e.link) for k, e in manifest.items()}


def expected(proj, exclude):
    rules = IgnoreRules.load(proj, exclude)
    return {k: v for k, v in tree(proj).items() if not rules.matches(k) and not k.startswith(".devloop/")}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=files, ignores=ignore_files, edit_list=edits)
def test_property_remote_mirrors_local_minus_ignored(tmp_path_factory, first, ignores, edit_list):
    base = tmp_path_factory.mktemp("prop")
    wd = base / "wd"
    proj = make_project(base, wd, exclude=["*.txt"])
    for d, pats in ignores.items():
        (proj / d).mkdir(parents=True, exist_ok=True)
        (proj / d / ".gitignore").write_text("\n".join(pats) + "\n")
    apply_files(proj, first)
    # what a run wrote on the remote: devloop must never touch it
    (wd / "checkpoints").mkdir(parents=True)
    (wd / "checkpoints" / "epoch1.pt").write_bytes(b"weights")

    async def go():
        target, config = target_for(proj)
        await target.start()
        scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
        plan, _ = await sync_once(target, scanner, None)
        apply_edits(proj, edit_list)
        old = plan.new_manifest
        new = scanner.scan()
        await sync_via_agent(target, plan_sync(old, new), str(proj))
        remote = await fetch_remote_manifest(target)
        # content, size, mode and link agree; mtime may differ where only the mtime changed
        assert content(remote) == content(new)

    asyncio.run(go())
    want = expected(proj, ["*.txt"])
    got = tree(wd)
    assert got.pop("checkpoints/epoch1.pt") == ("file", b"weights", False)
    assert got == want


async def test_manifest_through_the_kept_receiver_then_sync_one_process(tmp_path):
    """What `devloop sync` does: ask and sync through one `receive --serve` process."""
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    (proj / "a.py").write_text("1")
    target, _ = target_for(proj)
    await target.start()
    spawned = []
    real_spawn = target.spawn

    async def spawn(argv, *a, **kw):
        spawned.append(list(argv))
        return await real_spawn(argv, *a, **kw)

    target.spawn = spawn
    scanner = Scanner(proj, IgnoreRules.load(proj))
    try:
        assert await fetch_remote_manifest(target, keep_open=True) is None
        plan = plan_sync(None, scanner.scan())
        await sync_via_agent(target, plan, str(proj), keep_open=True)
        assert await fetch_remote_manifest(target, keep_open=True) == plan.new_manifest
        (proj / "a.py").write_text("22")
        plan2 = plan_sync(plan.new_manifest, scanner.scan())
        stats = await sync_via_agent(target, plan2, str(proj), keep_open=True)
        assert stats.files == 1 and (wd / "a.py").read_text() == "22"
    finally:
        await close_receiver(target)
    assert len(spawned) == 1 and spawned[0][-1] == "--serve"
    # a receiver that died is replaced once, transparently
    try:
        assert await fetch_remote_manifest(target, keep_open=True) == plan2.new_manifest
        from devloop.core.sync import transport

        await transport._receivers[target][1].kill()
        assert await fetch_remote_manifest(target, keep_open=True) == plan2.new_manifest
    finally:
        await close_receiver(target)


async def test_a_big_plan_is_read_on_a_thread_and_arrives_whole(tmp_path):
    """Over THREADED_FILES files: read and framed on a thread (the event loop never waits on the
    disk), sent in order, progress counted, the remote equal to the local tree."""
    import threading

    from devloop.core.sync import transport

    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    for i in range(transport.THREADED_FILES + 40):
        d = proj / "src" / f"d{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.py").write_bytes(os.urandom(i * 37 % 5000))
    (proj / "big.bin").write_bytes(os.urandom(3 * transport.SEND_BYTES + 11))
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    progress = []
    readers = []
    original = threading.Thread.start

    def spy(self):
        if self.name == "devloop-sync-read":
            readers.append(self)
        return original(self)

    threading.Thread.start = spy
    try:
        plan, stats = await sync_once(target, scanner, None, on_progress=lambda *a: progress.append(a))
    finally:
        threading.Thread.start = original
    assert readers, "the big plan was not read on a thread"
    assert stats.files == len(plan.copies)
    assert tree(wd) == tree(proj)
    await close_receiver(target)
    await target.stop()


async def test_a_cancelled_big_sync_leaves_no_reader_thread_behind(tmp_path):
    import threading

    from devloop.core.sync import transport

    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    for i in range(transport.THREADED_FILES + 10):
        (proj / f"f{i}.bin").write_bytes(os.urandom(64 * 1024))
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    streaming = asyncio.Event()
    task = asyncio.create_task(sync_once(target, scanner, None, on_progress=lambda *a: streaming.set()))
    await asyncio.wait_for(streaming.wait(), 30)  # the first MiB went out: cancel mid-stream
    assert any(t.name == "devloop-sync-read" and t.is_alive() for t in threading.enumerate())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if not any(t.name == "devloop-sync-read" and t.is_alive() for t in threading.enumerate()):
            break
        await asyncio.sleep(0.05)
    assert not any(t.name == "devloop-sync-read" and t.is_alive() for t in threading.enumerate())
    await close_receiver(target)
    await target.stop()


# -- a first sync reads each file once: hashed while sent, the hashes kept on both sides ----------

def sha_of(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


LONG_NAME = "/".join(f"dir{i:02d}" for i in range(20)) + "/file.py"  # over ustar's 100 bytes


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "threaded"])
@pytest.mark.parametrize("keep_open", [False, True], ids=["receive", "kept-receiver"])
async def test_first_sync_hashes_files_while_sending(tmp_path, keep_open, threaded):
    """scan(hash_new=False) then a sync: plan.new_manifest ends with the real sha256 of every file
    (empty, one block, in pieces over SMALL_FILE, over the 1 MiB send size, long and non-ASCII
    names), the remote record holds the same, no hashes file lands in the workdir, and once the
    scanner adopts the hashes the next scan reads nothing and the next sync sends nothing.
    `threaded`: a plan over THREADED_BYTES, read (and hashed) on the reader thread."""
    from devloop.core.sync import transport

    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    contents = {
        "empty.txt": b"",
        "small.py": b"print(1)\n",
        "block.bin": os.urandom(512),
        "pieces.bin": os.urandom(transport.SMALL_FILE + 1),
        "big.bin": os.urandom((transport.THREADED_BYTES if threaded else transport.SEND_BYTES) + 1),
        "données/é.py": "x = 'é'\n".encode(),
        LONG_NAME: b"deep",
        "n" * 97 + ".py": b"a name of exactly 100 bytes: no NUL after it in the header",
    }
    for rel, data in contents.items():
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_bytes(data)
    os.symlink("small.py", proj / "link.py")
    os.symlink(LONG_NAME, proj / "long_link.py")  # a target over 100 bytes: a PAX linkpath
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    try:
        new = scanner.scan(hash_new=False)
        files = [rel for rel, e in new.items() if e.link is None]
        assert set(contents) <= set(files)
        assert scanner.hashed == 0 and scanner.unhashed == len(files)
        assert all(new[rel].sha256 == "" for rel in files)
        plan = plan_sync(None, new)
        stats = await sync_via_agent(target, plan, str(proj), keep_open=keep_open)
        assert stats.files == len(plan.copies) == len(new)
        assert {rel: plan.new_manifest[rel].sha256 for rel in files} == {rel: sha_of(proj / rel) for rel in files}
        assert plan.new_manifest["link.py"].sha256 == "" and plan.new_manifest["link.py"].link == "small.py"
        assert os.readlink(wd / "long_link.py") == LONG_NAME
        assert tree(wd) == tree(proj)
        assert sorted(os.listdir(wd / ".devloop")) == ["manifest.json"]
        remote = await fetch_remote_manifest(target, keep_open=keep_open)
        assert remote == plan.new_manifest
        scanner.adopt_hashes(plan.new_manifest)
        again = scanner.scan(hash_new=False)
        assert scanner.hashed == 0 and scanner.unhashed == 0
        plan2 = plan_sync(remote, again)
        assert plan2.empty
        stats2 = await sync_via_agent(target, plan2, str(proj), keep_open=keep_open)
        assert (stats2.files, stats2.bytes, stats2.deleted) == (0, 0, 0)
    finally:
        await close_receiver(target)


@pytest.mark.parametrize("change", ["size", "mtime"])
async def test_a_file_rewritten_between_scan_and_send_is_sent_without_a_hash(tmp_path, change):
    """A file rewritten after the scan (another size, or the same size with another mtime) is
    sent as it is now, but the hash of those bytes is not filled in for the scanned entry (it
    stays ""), on either side; the scanner does not adopt it, and the next sync sends exactly
    that file again and then records its real hash."""
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    (proj / "a.py").write_bytes(b"v1")
    (proj / "b.py").write_bytes(b"other")
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    new = scanner.scan(hash_new=False)
    plan = plan_sync(None, new)
    scanned = new["a.py"]
    if change == "size":
        (proj / "a.py").write_bytes(b"version two")
    else:
        (proj / "a.py").write_bytes(b"v2")
        os.utime(proj / "a.py", ns=(scanned.mtime_ns + 5_000_000_000,) * 2)
    rewritten = (proj / "a.py").read_bytes()
    await sync_via_agent(target, plan, str(proj))
    assert (wd / "a.py").read_bytes() == rewritten
    assert plan.new_manifest["a.py"] == scanned  # still the scanned entry, sha256 ""
    assert plan.new_manifest["b.py"].sha256 == sha_of(proj / "b.py")
    remote = await fetch_remote_manifest(target)
    assert remote["a.py"].sha256 == "" and remote["b.py"].sha256 == sha_of(proj / "b.py")
    # what `devloop sync` does next time: only a.py is unknown, and it is sent again
    scanner.adopt_hashes(plan.new_manifest)
    again = scanner.scan(hash_new=False)
    assert scanner.unhashed == 1 and again["a.py"].sha256 == ""
    scanner.hash_needed(remote)
    plan2 = plan_sync(remote, again)
    assert plan2.copies == ("a.py",)
    await sync_via_agent(target, plan2, str(proj))
    assert plan2.new_manifest["a.py"].sha256 == sha_of(proj / "a.py")
    assert (await fetch_remote_manifest(target)) == plan2.new_manifest


@pytest.mark.parametrize("keep_open", [False, True], ids=["receive", "kept-receiver"])
async def test_a_cancelled_sync_leaves_no_temp_file_in_the_workdir(tmp_path, keep_open):
    """Quitting during a big first sync ends the receiver's input instead of killing it
    outright: it removes the half-written temp file and exits, so no `.devloop-tmp-*` file is
    left in the workdir for the user's code to trip over."""
    from devloop.core.sync import transport

    wd = tmp_path / "wd"
    proj = make_project(tmp_path, wd)
    for i in range(24):
        (proj / f"big{i:02d}.bin").write_bytes(os.urandom(2 << 20))
    target, config = target_for(proj)
    await target.start()
    scanner = Scanner(proj, IgnoreRules.load(proj, config.sync.exclude))
    plan = plan_sync(None, scanner.scan(False))
    streaming = asyncio.Event()
    task = asyncio.create_task(transport.sync_via_agent(target, plan, str(proj), lambda *a: streaming.set(),
                                                        keep_open=keep_open))
    await asyncio.wait_for(streaming.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    left = [p.name for p in wd.rglob("*") if "devloop-tmp" in p.name]
    assert left == []
    await close_receiver(target)
    await target.stop()
