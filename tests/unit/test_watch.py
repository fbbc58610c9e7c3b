"""The watcher on a real folder (inotify through watchfiles): batches, ignores, editor saves."""

import asyncio
import os

from devloop.core.sync.ignore import IgnoreRules
from devloop.core.watch import watch_changes


async def collect(root, rules, action, settle=0.6):
    """Start watching, run `action`, gather batches until `settle` seconds pass quietly."""
    stop = asyncio.Event()
    batches = []

    async def watcher():
        async for batch in watch_changes(root, rules, 50, stop):
            batches.append(batch)

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)  # let inotify watches be set up
    await asyncio.to_thread(action)
    await asyncio.sleep(settle)
    stop.set()
    await asyncio.wait_for(task, 10)
    return batches


async def test_ignored_paths_trigger_nothing(tmp_path):
    (tmp_path / ".gitignore").write_text("checkpoints/\n")
    (tmp_path / "checkpoints").mkdir()
    rules = IgnoreRules.load(tmp_path)

    def run_writes_checkpoints():
        for i in range(1000):
            (tmp_path / "checkpoints" / f"step{i}.pt").write_bytes(b"w")
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "index").write_bytes(b"x")

    assert await collect(tmp_path, rules, run_writes_checkpoints) == []


async def test_vim_style_save_is_one_batch_naming_the_file(tmp_path):
    target = tmp_path / "train.py"
    target.write_text("a = 1\n")
    rules = IgnoreRules.load(tmp_path)

    def vim_save():
        probe = tmp_path / "4913"
        probe.write_text("")
        probe.unlink()
        (tmp_path / ".train.py.swp").write_bytes(b"swap")
        os.rename(target, tmp_path / "train.py~")
        target.write_text("a = 2\n")
        (tmp_path / "train.py~").unlink()
        (tmp_path / ".train.py.swp").unlink()

    assert await collect(tmp_path, rules, vim_save) == [{"train.py"}]


async def test_temp_then_rename_save_is_one_batch(tmp_path):
    target = tmp_path / "pkg" / "model.py"
    target.parent.mkdir()
    target.write_text("x\n")
    rules = IgnoreRules.load(tmp_path)

    def atomic_save():
        tmp = tmp_path / "pkg" / ".model.py.tmp1234"
        tmp.write_text("y\n")
        os.replace(tmp, target)

    assert await collect(tmp_path, rules, atomic_save) == [{"pkg/model.py"}]


async def test_exclude_patterns_and_new_ignore_rules_apply(tmp_path):
    rules = IgnoreRules.load(tmp_path, ["*.log"])

    def edits():
        (tmp_path / "run.log").write_text("x")
        (tmp_path / "a.py").write_text("x")

    assert await collect(tmp_path, rules, edits) == [{"a.py"}]


async def test_a_file_rewritten_in_place_in_pieces_is_yielded_only_when_complete(tmp_path):
    """An editor (or a copy) that truncates the file and writes it in many small pieces over
    longer than watchfiles' longest batch: no batch may arrive while the file is half-written."""
    import threading
    import time

    target = tmp_path / "train.py"
    versions = ["".join(f"value_{v}_{i} = {i}  # {'x' * 40}\n" for i in range(150)) for v in range(4)]
    target.write_text(versions[0])
    rules = IgnoreRules.load(tmp_path)
    writing = threading.Event()
    seen = []  # (was the writer mid-write, the file's content) at each batch

    def rewrite_in_place():
        for text in versions[1:]:
            data = text.encode()
            with open(target, "r+b", buffering=0) as fh:
                writing.set()
                fh.truncate(0)
                for start in range(0, len(data), len(data) // 150 + 1):
                    fh.write(data[start:start + len(data) // 150 + 1])
                    time.sleep(0.01)  # ~1.5 s of writing, far longer than one 1 s batch
                writing.clear()
            time.sleep(1.0)  # the file stays complete: a batch may come now

    stop = asyncio.Event()

    async def watcher():
        async for batch in watch_changes(tmp_path, rules, 200, stop):
            seen.append((writing.is_set(), target.read_text(), batch))

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(rewrite_in_place)
    stop.set()
    await asyncio.wait_for(task, 10)

    assert seen, "the rewrites were never reported"
    for mid_write, text, batch in seen:
        assert batch == {"train.py"}
        assert not mid_write and text in versions, f"a batch came while train.py was {len(text)} bytes"
    assert seen[-1][1] == versions[-1]


async def test_ready_is_set_once_the_watcher_sees_writes_and_a_save_right_after_is_caught(tmp_path):
    """`ready` (what a front end's first pass waits for) means a save is seen: no sleep here,
    the save comes the moment `ready` is set; the canary that proved it is gone and never yielded."""
    (tmp_path / "nb.py").write_text("x = 1\n")
    rules = IgnoreRules.load(tmp_path)
    stop, ready = asyncio.Event(), asyncio.Event()
    batches = []

    async def watcher():
        async for batch in watch_changes(tmp_path, rules, 50, stop, ready):
            batches.append(batch)
            stop.set()

    task = asyncio.create_task(watcher())
    await asyncio.wait_for(ready.wait(), 10)
    (tmp_path / "nb.py").write_text("x = 2\n")
    await asyncio.wait_for(task, 10)
    assert batches == [{"nb.py"}]
    assert [p.name for p in (tmp_path / ".devloop").iterdir()] == []
