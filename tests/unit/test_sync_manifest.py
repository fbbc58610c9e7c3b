"""Scanner + ignore rules on real temporary trees."""

import os
import subprocess
import sys

from devloop.core.sync.manifest import (IgnoreRules, Scanner, load_local_manifest, save_local_manifest)


def write(root, rel, data="x", mode=None):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)
    if mode is not None:
        os.chmod(p, mode)
    return p


def scan(root, extra=()):
    return Scanner(root, IgnoreRules.load(root, extra)).scan()


def test_gitignore_any_depth_with_negation(tmp_path):
    write(tmp_path, ".gitignore", "*.log\ndata/\n")
    write(tmp_path, "a.log")
    write(tmp_path, "data/big.bin")
    write(tmp_path, "sub/.gitignore", "!keep.log\n")
    write(tmp_path, "sub/keep.log")
    write(tmp_path, "sub/other.log")
    write(tmp_path, "sub/deeper/.gitignore", "secret.txt\n")
    write(tmp_path, "sub/deeper/secret.txt")
    write(tmp_path, "secret.txt")
    m = scan(tmp_path)
    assert set(m) == {".gitignore", "sub/.gitignore", "sub/keep.log", "sub/deeper/.gitignore", "secret.txt"}


def test_devloopignore_exclude_and_always_excluded(tmp_path):
    write(tmp_path, ".devloopignore", "checkpoints/\n")
    write(tmp_path, ".gitignore", ".env\n")
    write(tmp_path, ".git/HEAD")
    write(tmp_path, ".devloop/manifests/x.json")
    write(tmp_path, "checkpoints/c1.pt")
    write(tmp_path, "notes.md")
    write(tmp_path, "train.py")
    write(tmp_path, "train.py.swp")
    write(tmp_path, "train.py~")
    write(tmp_path, "4913")
    write(tmp_path, "__pycache__/train.cpython-311.pyc")
    m = scan(tmp_path, ["*.md", "!.git/"])
    assert set(m) == {".devloopignore", ".gitignore", "train.py"}


def test_devloopignore_can_reinclude_what_gitignore_excludes(tmp_path):
    write(tmp_path, ".gitignore", "*.csv\n")
    write(tmp_path, ".devloopignore", "!labels.csv\n")
    write(tmp_path, "labels.csv")
    write(tmp_path, "other.csv")
    assert "labels.csv" in scan(tmp_path) and "other.csv" not in scan(tmp_path)


def test_matches_checks_folders_above(tmp_path):
    write(tmp_path, ".gitignore", "checkpoints/\n")
    rules = IgnoreRules.load(tmp_path, ["outputs/"])
    assert rules.matches("checkpoints/epoch1/model.pt")
    assert rules.matches("outputs/x")
    assert rules.matches(".git/objects/ab")
    assert not rules.matches("src/model.py")


def test_modes_links_and_hashes(tmp_path):
    write(tmp_path, "run.sh", "#!/bin/sh\n", mode=0o755)
    write(tmp_path, "a.py", "print(1)\n")
    os.symlink("a.py", tmp_path / "link.py")
    m = scan(tmp_path)
    assert m["run.sh"].mode == 0o755 and m["a.py"].mode == 0o644
    assert m["link.py"].link == "a.py" and m["link.py"].sha256 == ""
    assert len(m["a.py"].sha256) == 64 and m["a.py"].size == 9


def test_stat_cache_hashes_only_changed_files(tmp_path):
    for i in range(20):
        write(tmp_path, f"f{i}.py", str(i))
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    first = sc.scan()
    assert sc.hashed == 20
    again = sc.scan()
    assert sc.hashed == 0 and again == first and again["f1.py"] is first["f1.py"]
    write(tmp_path, "f3.py", "changed")
    third = sc.scan()
    assert sc.hashed == 1 and third["f3.py"] != first["f3.py"]


def cached_scanner(proj):
    """A scanner keeping its stat cache where `devloop sync` keeps it."""
    return Scanner(proj, IgnoreRules.load(proj), cache_file=proj / ".devloop" / "statcache.json")


def test_stat_cache_survives_on_disk(tmp_path):
    proj = tmp_path / "p"
    for i in range(5):
        write(proj, f"f{i}.py", str(i))
    sc = cached_scanner(proj)
    first = sc.scan()
    sc.save_cache()
    sc2 = cached_scanner(proj)
    assert sc2.scan() == first and sc2.hashed == 0


def test_update_names_only_what_changed(tmp_path):
    write(tmp_path, "a.py", "1")
    write(tmp_path, "pkg/b.py", "2")
    write(tmp_path, ".gitignore", "out/\n")
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    base = sc.scan()
    write(tmp_path, "a.py", "changed")
    write(tmp_path, "new/c.py", "3")
    write(tmp_path, "out/ckpt", "4")
    m = sc.update(["a.py", "new", "out/ckpt"])
    assert sc.hashed == 2
    assert set(m) == set(base) | {"new/c.py"}
    (tmp_path / "pkg" / "b.py").unlink()
    (tmp_path / "pkg").rmdir()
    m2 = sc.update(["pkg"])
    assert "pkg/b.py" not in m2 and "a.py" in m2


def test_update_reloads_when_an_ignore_file_changes(tmp_path):
    write(tmp_path, "a.log")
    write(tmp_path, "b.py")
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    assert "a.log" in sc.scan()
    write(tmp_path, ".gitignore", "*.log\n")
    m = sc.update([".gitignore"])
    assert "a.log" not in m and ".gitignore" in m


def test_full_scan_notices_a_changed_ignore_file(tmp_path):
    write(tmp_path, "sub/a.log")
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    assert "sub/a.log" in sc.scan()
    write(tmp_path, "sub/.gitignore", "*.log\n")
    assert "sub/a.log" not in sc.scan()


def test_local_manifest_per_profile(tmp_path):
    write(tmp_path, "a.py")
    m = scan(tmp_path)
    assert load_local_manifest(tmp_path, "gpu") is None
    save_local_manifest(tmp_path, "gpu", m)
    assert load_local_manifest(tmp_path, "gpu") == m
    assert (tmp_path / ".devloop" / "manifests" / "gpu.json").exists()


# -- the persisted stat cache trusts earlier ignore decisions only while the rules are the same --

def test_persisted_cache_follows_ignore_files_changed_between_runs(tmp_path):
    cache = tmp_path / "cache.json"
    proj = tmp_path / "p"
    write(proj, ".gitignore", "*.log\n")
    write(proj, "a.py")
    write(proj, "b.log")
    write(proj, "sub/c.txt")
    write(proj, "sub/d.py")

    def run(extra=()):
        s = Scanner(proj, IgnoreRules.load(proj, extra), cache_file=cache)
        m = s.scan()
        s.save_cache()
        return set(m)

    assert run() == {".gitignore", "a.py", "sub/c.txt", "sub/d.py"}
    assert run() == {".gitignore", "a.py", "sub/c.txt", "sub/d.py"}  # trusted: same answer
    write(proj, ".gitignore", "*.log\n*.txt\n")  # changed root ignore file
    assert run() == {".gitignore", "a.py", "sub/d.py"}
    write(proj, "sub/.devloopignore", "d.py\n")  # a new ignore file deeper down
    assert run() == {".gitignore", "a.py", "sub/.devloopignore"}
    assert run(["a.py"]) == {".gitignore", "sub/.devloopignore"}  # [sync].exclude changed
    (proj / ".gitignore").unlink()  # gone: what it excluded comes back
    (proj / "sub" / ".devloopignore").unlink()
    assert run() == {"a.py", "b.log", "sub/c.txt", "sub/d.py"}


def test_cold_scan_with_cache_hashes_nothing_unchanged(tmp_path):
    cache = tmp_path / "cache.json"
    proj = tmp_path / "p"
    for i in range(100):
        write(proj, f"d{i % 7}/f{i}.py", str(i))
    s = Scanner(proj, IgnoreRules.load(proj), cache_file=cache)
    first = s.scan()
    s.save_cache()
    s2 = Scanner(proj, IgnoreRules.load(proj), cache_file=cache)
    assert s2.scan() == first and s2.hashed == 0


# -- the combined-regex prefilter gives exactly pathspec's answers ------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PATTERN_PARTS = ["*.py", "a", "b/", "/a", "a/**/c", "**/b", "!a", "!*.py", "c?", "[ab]*", "a/b", "*", "!b/",
                 "d/", "\\#x", "*.p[y]", "a*/", "!c?", "**"]
REL_PATHS = ["a", "b", "c1", "a.py", "a/b", "a/c", "a/b/c", "b/a.py", "d/e.py", "x/a/y/c", "#x", "cz/a.py"]


def _reference(specs, relpath, is_dir):
    """The decision as pathspec gives it, level by level (no prefilter)."""
    parts = relpath.split("/")
    for depth in range(len(parts) - 1, -1, -1):
        spec = specs.get("/".join(parts[:depth]))
        if spec is None:
            continue
        verdict = spec.check_file("/".join(parts[depth:]) + ("/" if is_dir else "")).include
        if verdict is not None:
            return verdict
    return False


@settings(max_examples=150, deadline=None)
@given(root_lines=st.lists(st.sampled_from(PATTERN_PARTS), max_size=6),
       sub_lines=st.lists(st.sampled_from(PATTERN_PARTS), max_size=4),
       rel=st.sampled_from(REL_PATHS), is_dir=st.booleans())
def test_prefilter_matches_pathspec(tmp_path_factory, root_lines, sub_lines, rel, is_dir):
    import pathspec

    from devloop.core.sync.ignore import DEFAULT_PATTERNS

    root = tmp_path_factory.mktemp("ign")
    (root / ".gitignore").write_text("\n".join(root_lines) + "\n")
    (root / "a").mkdir()
    (root / "a" / ".gitignore").write_text("\n".join(sub_lines) + "\n")
    specs = {"": pathspec.GitIgnoreSpec.from_lines([*DEFAULT_PATTERNS, *root_lines])}
    if sub_lines:
        specs["a"] = pathspec.GitIgnoreSpec.from_lines(sub_lines)
    rules = IgnoreRules.load(root)
    assert rules._decide(rel, is_dir) == _reference(specs, rel, is_dir)


# -- first-sync hashing: scan(hash_new=False), hash_needed, adopt_hashes, hash_file ----------------

import hashlib  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from devloop.core.sync.manifest import CHUNK, Entry, hash_file  # noqa: E402


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scan_without_hashing_new_files(tmp_path):
    """scan(hash_new=False) lists new files with sha256 "" and reads none of them; a file the
    stat cache already knows keeps its hash; links are as always."""
    write(tmp_path, "old.py", "old")
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    sc.scan()
    write(tmp_path, "a.py", "aa")
    write(tmp_path, "pkg/b.py", "bbb", mode=0o755)
    os.symlink("a.py", tmp_path / "l.py")
    m = sc.scan(hash_new=False)
    assert sc.hashed == 0 and sc.unhashed == 2
    assert m["a.py"] == Entry(2, os.stat(tmp_path / "a.py").st_mtime_ns, 0o644, "", None)
    assert m["pkg/b.py"].sha256 == "" and m["pkg/b.py"].mode == 0o755 and m["pkg/b.py"].size == 3
    assert m["old.py"].sha256 == sha(tmp_path / "old.py")
    assert m["l.py"].link == "a.py"
    # not taken into the stat cache unhashed: a normal scan hashes exactly those two
    m2 = sc.scan()
    assert sc.hashed == 2 and sc.unhashed == 0 and m2["a.py"].sha256 == sha(tmp_path / "a.py")


def test_hash_needed_hashes_only_what_the_remote_may_hold(tmp_path):
    """Only an unhashed file the remote has at the same path with the same size (and not as a
    link) is hashed: for the others the hash cannot change the plan (they are sent anyway)."""
    for rel, data in {"same.py": "1234", "resized.py": "1234", "elsewhere.py": "1234",
                      "was_link.py": "1234", "new.py": "1234"}.items():
        write(tmp_path, rel, data)
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    m = sc.scan(hash_new=False)
    remote = {
        "same.py": Entry(4, 1, 0o644, "remote-hash", None),
        "resized.py": Entry(5, 1, 0o644, "remote-hash", None),
        "other/elsewhere.py": Entry(4, 1, 0o644, "remote-hash", None),
        "was_link.py": Entry(4, 1, 0o777, "", "x.py"),  # a link whose target is 4 bytes
    }
    assert sc.hash_needed(remote) == 1
    assert sc.hashed == 1 and sc.unhashed == 4
    assert m["same.py"].sha256 == sha(tmp_path / "same.py")  # the manifest scan() returned
    assert sc.manifest["same.py"] is m["same.py"]
    assert {rel for rel, e in m.items() if not e.sha256} == {"resized.py", "elsewhere.py", "was_link.py", "new.py"}
    assert sc.hash_needed(remote) == 0  # already done
    sc.scan()
    assert sc.hashed == 4  # same.py went into the stat cache


def test_hash_needed_without_a_remote_hashes_nothing(tmp_path):
    write(tmp_path, "a.py")
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    sc.scan(hash_new=False)
    assert sc.hash_needed(None) == 0 and sc.hash_needed({}) == 0 and sc.hashed == 0 and sc.unhashed == 1


def test_adopt_hashes_fills_the_stat_cache(tmp_path):
    """Hashes the transport computed while sending go into the stat cache (and the saved
    cache): the next scan, in this process or the next, reads nothing."""
    for i in range(5):
        write(tmp_path, f"f{i}.py", "x" * i)
    cache = tmp_path / ".devloop" / "statcache.json"
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path), cache_file=cache)
    m = sc.scan(hash_new=False)
    sent = {rel: e._replace(sha256=sha(tmp_path / rel)) for rel, e in m.items()}  # what the transport fills in
    sc.adopt_hashes(sent)
    assert sc.unhashed == 0
    assert sc.manifest == sent
    again = sc.scan(hash_new=False)
    assert sc.hashed == 0 and sc.unhashed == 0 and again == sent
    sc.save_cache()
    cold = Scanner(tmp_path, IgnoreRules.load(tmp_path), cache_file=cache)
    assert cold.scan() == sent and cold.hashed == 0


def test_adopt_hashes_skips_files_changed_since_the_scan(tmp_path):
    """A hash is adopted only for an entry with the size and mtime_ns the scan saw: one sent with
    another stat (rewritten between scan and send), or without a hash, is hashed next scan."""
    for rel in ("kept.py", "new_mtime.py", "new_size.py", "no_hash.py"):
        write(tmp_path, rel, "data")
    sc = Scanner(tmp_path, IgnoreRules.load(tmp_path))
    m = sc.scan(hash_new=False)
    sent = {
        "kept.py": m["kept.py"]._replace(sha256=sha(tmp_path / "kept.py")),
        "new_mtime.py": m["new_mtime.py"]._replace(sha256="f" * 64, mtime_ns=m["new_mtime.py"].mtime_ns + 1),
        "new_size.py": m["new_size.py"]._replace(sha256="f" * 64, size=5),
        "no_hash.py": m["no_hash.py"],
    }
    sc.adopt_hashes(sent)
    again = sc.scan()
    assert sc.hashed == 3
    assert {rel: e.sha256 for rel, e in again.items()} == {rel: sha(tmp_path / rel) for rel in sent}


def test_hash_file_matches_hashlib_across_sizes_and_threads(tmp_path):
    """hash_file reuses one read buffer per thread: sizes at the buffer's edge hash right, and
    threads hashing at once do not share (and garble) a buffer."""
    paths = []
    for i, n in enumerate([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3, 4096, 7]):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(n))
        paths.append(p)
    want = [sha(p) for p in paths]
    assert [hash_file(str(p)) for p in paths] == want
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda p: hash_file(str(p)), paths * 4)) == want * 4


def test_stat_cache_is_written_only_when_it_changed(tmp_path):
    """`devloop sync` with nothing new does not rewrite a 1 MB cache; a change does."""
    proj = tmp_path / "p"
    for i in range(3):
        write(proj, f"f{i}.py", str(i))
    cache = proj / ".devloop" / "statcache.json"
    sc = cached_scanner(proj)
    sc.scan()
    sc.save_cache()
    os.utime(cache, ns=(1, 1))  # mark it: an unchanged cache keeps this mtime
    sc2 = cached_scanner(proj)
    sc2.scan()
    sc2.save_cache()
    assert cache.stat().st_mtime_ns == 1
    write(proj, "f1.py", "changed")
    sc2.scan()
    sc2.save_cache()
    assert cache.stat().st_mtime_ns != 1  # rewritten
    sc3 = cached_scanner(proj)
    sc3.scan()
    assert sc3.hashed == 0


def test_cached_scan_needs_no_pathspec_until_something_new_appears(tmp_path):
    """Folder decisions are kept with the stat cache: a rescan from the cache of an unchanged
    tree makes no ignore decision (so `devloop sync` skips pathspec's import), and a changed
    .gitignore still takes effect."""
    proj = tmp_path / "p"
    write(proj, "src/a.py", "1")
    write(proj, "src/deep/b.py", "2")
    write(proj, "out/ckpt.bin", "3")
    write(proj, ".gitignore", "out/\n")
    cache = proj / ".devloop" / "statcache.json"
    sc = cached_scanner(proj)
    first = sc.scan()
    sc.save_cache()
    assert "out/ckpt.bin" not in first
    code = (
        "import sys\n"
        "from devloop.core.sync.manifest import IgnoreRules, Scanner\n"
        f"root = {str(proj)!r}\n"
        f"sc = Scanner(root, IgnoreRules.load(root), cache_file={str(cache)!r})\n"
        "m = sc.scan()\n"
        "print(sorted(m), sc.hashed, 'pathspec' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{sorted(first)} 0 False"
    write(proj, ".gitignore", "out/\ndeep/\n")  # a changed ignore file: decisions made again
    sc2 = cached_scanner(proj)
    assert "src/deep/b.py" not in sc2.scan()
