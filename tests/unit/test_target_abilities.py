"""What a target can do beyond start/spawn/stop is declared on Target with a do-nothing default,
so callers (the session, `devloop doctor`) call it directly instead of probing with getattr."""

import inspect

from devloop.core.config import load_config
from devloop.core.targets import base
from devloop.core.targets.local import LocalTarget


async def test_a_target_without_the_abilities_answers_their_defaults(tmp_path):
    (tmp_path / "devloop.toml").write_text('[project]\nname = "t"\n')
    config = load_config(tmp_path)
    target = LocalTarget(config.profile(None), config)
    assert target.progress is None and target.needs_sync is False  # local, in place
    seen = []
    assert await target.follow_logs(seen.append) is None and seen == []  # returns at once
    assert await target.explain_exit(137) is None
    assert tuple(await target.doctor_checks()) == ()


def test_the_target_interface_does_not_reach_into_the_sync_code():
    """Sync is the Syncer's (devloop.core.sync.syncer), which calls the transport itself: the
    transport imports targets.base, so base importing the transport would be a cycle."""
    source = inspect.getsource(base)
    assert "from devloop.core.sync" not in source and "import devloop.core.sync" not in source
    assert not hasattr(base.Target, "sync") and not hasattr(base.Target, "remote_manifest")
