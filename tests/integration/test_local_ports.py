"""Port forwarding on the local target (a synced workdir, as a remote): see ports_scenario.py."""

from __future__ import annotations

import os
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


def test_watch_prints_its_forwards_at_start_and_closes_them_on_ctrl_c(tmp_path: Path):
    """The CLI: `--forward` (and [ports] with a warning for a bind beyond loopback) on
    `devloop watch`; the text mode names each forward at the start; Ctrl-C leaves no listener
    and no relay; a bad spec is a usage error."""
    import select
    import signal
    import socket
    import subprocess
    import time

    from tests.clitools import DEVLOOP

    root = tmp_path / "proj"
    root.mkdir()
    local, remote, other = free_port(), free_port(), free_port()
    (root / "devloop.toml").write_text(f'[project]\nname = "ports"\n[ports]\nforward = ["{other}"]\n'
                                       'bind = "0.0.0.0"\n')
    (root / "nb.py").write_text("# %%\nprint('hi')\n")
    proc = subprocess.Popen(DEVLOOP + ["watch", "nb.py", "--forward", f"{local}:{remote}"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    text = b""
    deadline = time.monotonic() + 60
    try:
        while text.count(b"(agent relay)") < 2 and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 1)[0]:
                text += os.read(proc.stderr.fileno(), 65536)
        said = text.decode()
        assert f"devloop: forward 0.0.0.0:{local} -> target:{remote} (agent relay)" in said, said
        assert f"devloop: forward 0.0.0.0:{other} -> target:{other} (agent relay)" in said, said
        assert "open to every machine" in said  # the bind beyond loopback is warned about
        with socket.create_connection(("127.0.0.1", local), timeout=10):
            pass  # listening
        until = time.monotonic() + 20  # the relay starts beside the session's first steps
        while not relays_on_this_machine(root) and time.monotonic() < until:
            time.sleep(0.1)
        assert relays_on_this_machine(root) != []
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", local)) != 0
    assert relays_on_this_machine(root) == []
    bad = subprocess.run(DEVLOOP + ["watch", "nb.py", "--forward", "70000"], cwd=root, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--forward" in bad.stderr and "not in 1-65535" in bad.stderr
