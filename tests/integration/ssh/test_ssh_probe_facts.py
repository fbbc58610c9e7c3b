"""The probe's facts kept between attaches (core/targets/ssh_facts.py): the next start opens its
first exec beside the probe instead of after it, and facts that went stale (the agent bundle
deleted on the host, an interpreter path that no longer holds) cost one exec, never a wrong run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devloop.core.config import load_config
from devloop.core.targets import create_target, ssh_facts
from devloop.core.targets.ssh import SshTarget

pytestmark = pytest.mark.ssh


async def run_agent_hello(project: Path) -> tuple[SshTarget, str]:
    config = load_config(project)
    target = create_target(config.profile("ssh-test"), config)
    assert isinstance(target, SshTarget)
    await target.start()
    ch = await target.spawn(target.agent_argv("manifest", "--help"))
    await ch.close_stdin()
    out = b""
    while line := await ch.readline():
        out += line
    code = await ch.wait()
    assert code == 0, (code, out, ch.stderr_tail())
    return target, out.decode()


async def test_facts_are_recorded_then_used_and_a_stale_record_is_corrected(ssh_project: Path) -> None:
    path = ssh_facts.facts_path(ssh_project, "ssh-test")
    target, _ = await run_agent_hello(ssh_project)
    await target.stop()
    recorded = json.loads(path.read_text())
    bundle = Path(recorded["facts"]["details"]["bundle"])
    assert bundle.is_file() and path.stat().st_mode & 0o777 == 0o600

    # second start: speculative, the record is right
    target, _ = await run_agent_hello(ssh_project)
    assert target.info.details["bundle"] == str(bundle)
    await target.stop()

    # the bundle was removed on the host: the early exec finds no agent, the probe copies it back
    bundle.unlink()
    target, _ = await run_agent_hello(ssh_project)
    await target.stop()
    assert bundle.is_file()

    # a record naming an interpreter that is not there any more: corrected by the probe
    data = json.loads(path.read_text())
    data["facts"]["python"] = "/nonexistent/python3"
    path.write_text(json.dumps(data))
    target, _ = await run_agent_hello(ssh_project)
    assert target.info.python != "/nonexistent/python3"
    await target.stop()
    assert json.loads(path.read_text())["facts"]["python"] == target.info.python
