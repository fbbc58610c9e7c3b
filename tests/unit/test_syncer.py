"""The Syncer through the real local target with a `workdir:` (the agent's receive mode in a
subprocess): what the session and `devloop sync` both drive."""

import json
import os

from devloop.core.config import load_config
from devloop.core.sync import transport
from devloop.core.sync.manifest import load_local_manifest
from devloop.core.sync.syncer import Syncer
from devloop.core.targets.local import LocalTarget


def make_project(base, workdir: str | None = None):
    proj = base / "proj"
    (proj / "profiles").mkdir(parents=True)
    (proj / "devloop.toml").write_text('[project]\nname = "t"\n[sync]\nexclude = ["*.log"]\n')
    (proj / "profiles" / "wd.yaml").write_text(f"kind: local\nworkdir: {workdir}\n" if workdir else "kind: local\n")
    (proj / "pkg").mkdir()
    (proj / "pkg" / "m.py").write_text("x = 1\n")
    (proj / "train.py").write_text("import pkg.m\n")
    (proj / "out.log").write_text("ignored")
    return proj


async def started(proj):
    config = load_config(proj)
    target = LocalTarget(config.profile("wd"), config)
    await target.start()
    spawned = []
    real_spawn = target.spawn

    async def spawn(argv, *a, **kw):
        spawned.append(list(argv[-3:]))
        return await real_spawn(argv, *a, **kw)

    target.spawn = spawn
    return target, config, spawned


def modes(spawned):
    return [argv[argv.index(m):] for argv in spawned for m in ("manifest", "receive") if m in argv]


async def test_first_sync_sends_the_tree_keeps_the_record_and_the_hashes(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, str(wd))
    target, config, spawned = await started(proj)
    syncer = Syncer(target, proj, config.sync.exclude, profile="wd")
    try:
        result = await syncer.sync_now()
        assert result.sent and result.stats.files == 4
    finally:
        await syncer.close()
    assert (wd / "pkg" / "m.py").read_text() == "x = 1\n" and not (wd / "out.log").exists()
    new = result.plan.new_manifest
    assert set(new) == set(result.plan.copies) == {"devloop.toml", "profiles/wd.yaml", "pkg/m.py", "train.py"}
    # the files were hashed on the way out; the record, the remote and the scanner agree on them
    assert all(e.sha256 for e in new.values() if e.link is None)
    assert load_local_manifest(proj, "wd") == new == syncer.remote
    assert syncer.scanner.unhashed == 0
    # the first sync asks the remote with one process and sends with another (no kept receiver)
    assert modes(spawned) == [["manifest", str(wd)], ["receive", str(wd)]]


async def test_changed_paths_go_through_one_kept_receiver_until_close(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, str(wd))
    target, config, spawned = await started(proj)
    syncer = Syncer(target, proj, config.sync.exclude, profile="wd")
    try:
        await syncer.sync_now()
        for i in range(3):
            (proj / "pkg" / "m.py").write_text(f"x = {i + 2}\n")
            result = await syncer.sync_now(["pkg/m.py"])
            assert result.plan.copies == ("pkg/m.py",) and result.stats.files == 1
            assert (wd / "pkg" / "m.py").read_text() == f"x = {i + 2}\n"
        assert not (await syncer.sync_now(["pkg/m.py"])).sent  # unchanged: nothing sent
        assert target in transport._receivers
    finally:
        await syncer.close()
    assert target not in transport._receivers
    assert modes(spawned)[2:] == [["receive", str(wd), "--serve"]]  # one receiver for every save
    await syncer.flush()
    assert load_local_manifest(proj, "wd")["pkg/m.py"] == syncer.remote["pkg/m.py"]


async def test_the_command_path_one_receiver_answers_then_syncs_and_the_stat_cache_is_kept(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, str(wd))
    target, config, spawned = await started(proj)
    syncer = Syncer(target, proj, config.sync.exclude, profile="wd", stat_cache=True)
    syncer.begin_scan()  # as `devloop sync` does: the walk overlaps the target's start
    try:
        manifest = await syncer.connect(keep=True)
        plan = await syncer.plan(scanned=manifest)
        stats = await syncer.send(plan, keep=True)
        await syncer.flush()
    finally:
        await syncer.close()
    assert stats.files == len(plan.copies) == 4
    assert modes(spawned) == [["receive", str(wd), "--serve"]]
    cache = json.loads((proj / ".devloop" / "statcache.json").read_text())
    assert set(cache["files"]) == set(plan.new_manifest)
    # a fresh process (a new Syncer) hashes nothing, finds the remote up to date, sends nothing
    target2, _, spawned2 = await started(proj)
    again = Syncer(target2, proj, config.sync.exclude, profile="wd", stat_cache=True)
    try:
        manifest = await again.connect(keep=True)
        assert again.scanner.hashed == 0
        plan2 = await again.plan(scanned=manifest)
        assert plan2.empty
        await again.send(plan2, keep=True)  # records what the remote holds; sends nothing
    finally:
        await again.close()
    assert modes(spawned2) == [["receive", str(wd), "--serve"]]


async def test_dry_run_compares_with_the_record_and_sends_nothing(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, str(wd))
    target, config, spawned = await started(proj)
    syncer = Syncer(target, proj, config.sync.exclude, profile="wd")
    try:
        await syncer.sync_now()
    finally:
        await syncer.close()
    (proj / "train.py").write_text("print('changed')\n")
    os.remove(proj / "pkg" / "m.py")
    spawned.clear()
    plan = await Syncer(target, proj, config.sync.exclude, profile="wd", stat_cache=True).dry_run()
    assert plan.copies == ("train.py",) and plan.deletes == ("pkg/m.py",)
    assert spawned == [] and (wd / "train.py").read_text() == "import pkg.m\n"


async def test_after_a_reset_the_remote_is_asked_again_and_only_what_it_lacks_is_sent(tmp_path):
    wd = tmp_path / "wd"
    proj = make_project(tmp_path, str(wd))
    target, config, spawned = await started(proj)
    syncer = Syncer(target, proj, config.sync.exclude, profile="wd")
    try:
        await syncer.sync_now()
        os.remove(wd / "train.py")  # the target lost a file (say, a new container kept the rest)
        assert not (await syncer.sync_now()).sent  # the syncer still believes the remote has it
        await syncer.reset()
        result = await syncer.sync_now()
        assert result.plan.copies == ("train.py",)
    finally:
        await syncer.close()
    assert (wd / "train.py").read_text() == "import pkg.m\n"


async def test_a_target_that_runs_in_place_syncs_nothing(tmp_path):
    proj = make_project(tmp_path)
    target, config, spawned = await started(proj)
    syncer = Syncer(target, proj, config.sync.exclude, profile="wd")
    result = await syncer.sync_now()
    await syncer.close()
    assert not result.sent and spawned == [] and load_local_manifest(proj, "wd") is None
