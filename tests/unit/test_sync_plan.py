"""plan_sync is pure: manifests in, plan out, no I/O."""

from devloop.core.sync.manifest import Entry
from devloop.core.sync.plan import is_dependency_file, plan_sync


def e(sha="a", size=1, mode=0o644, link=None, mtime=1):
    return Entry(size, mtime, mode, sha, link)


def test_first_sync_copies_everything():
    new = {"a.py": e(size=3), "b/c.py": e(size=4), "l": e(sha="", size=1, mode=0o777, link="a.py")}
    plan = plan_sync(None, new)
    assert plan.copies == ("a.py", "b/c.py", "l")
    assert plan.deletes == () and plan.mode_changes == ()
    assert plan.bytes_total == 7  # links carry no bytes
    assert plan.new_manifest is new and not plan.empty


def test_no_change_is_empty_even_when_mtime_moved():
    old = {"a.py": e(mtime=1)}
    plan = plan_sync(old, {"a.py": e(mtime=2)})
    assert plan.empty and plan.copies == ()


def test_content_mode_link_and_delete():
    old = {"a.py": e("1"), "run.sh": e("2"), "gone.py": e("3"), "l": e("", link="x")}
    new = {"a.py": e("9"), "run.sh": e("2", mode=0o755), "l": e("", link="y"), "new.py": e("4")}
    plan = plan_sync(old, new)
    assert plan.copies == ("a.py", "l", "new.py")
    assert plan.mode_changes == ("run.sh",)
    assert plan.deletes == ("gone.py",)


def test_deletes_deepest_first():
    old = {"d/x": e(), "d/sub/y": e(), "z": e()}
    assert plan_sync(old, {}).deletes == ("d/sub/y", "d/x", "z")


def test_dependency_files_any_folder():
    old = {"requirements.txt": e("1"), "svc/pyproject.toml": e("1"), "uv.lock": e("1")}
    new = {"requirements.txt": e("2"), "svc/pyproject.toml": e("1"), "a/requirements-dev.txt": e("1"),
           "environment.yml": e("1")}
    plan = plan_sync(old, new)
    assert plan.dependency_files == ("a/requirements-dev.txt", "environment.yml", "requirements.txt", "uv.lock")
    assert is_dependency_file("x/y/requirements_gpu.txt")
    assert not is_dependency_file("requirements.md")
