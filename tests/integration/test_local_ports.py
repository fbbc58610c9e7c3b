"""Port forwarding on the local target (a synced workdir, as a remote): see ports_scenario.py."""

from __future__ import annotations

from pathlib import Path

from devloop.core.config import load_config
from tests.integration.ports_scenario import forward_scenario, free_port, relays_on_this_machine


async def test_local_forward_download_concurrency_refusal_busy_and_cleanup(tmp_path: Path):
    root = tmp_path / "proj"
    (root / "profiles").mkdir(parents=True)
    (root / "devloop.toml").write_text('[project]\nname = "ports"\n')
    (root / "profiles" / "loc.yaml").write_text(f"kind: local\nworkdir: {tmp_path / 'work'}\n")
    config = load_config(root)
    remote = free_port()
    await forward_scenario(root, config, config.profile("loc"), remote_port=remote,
                           during=lambda: relays_on_this_machine(tmp_path / "work"))
    assert relays_on_this_machine(tmp_path / "work") == []
