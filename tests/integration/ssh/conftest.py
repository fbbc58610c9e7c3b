"""A real OpenSSH server on 127.0.0.1 for the SSH tests (tests/infra/sshd-up.sh).

The server is shared by the session: `DEVLOOP_TEST_SSHD_DIR` names a running one (tests/run.sh
starts it), else this file runs the script itself. `DEVLOOP_SKIP_SSH=1` skips every SSH test,
loudly. Each test gets its own ssh config file (via DEVLOOP_SSH_CONFIG), known_hosts and project
in tmp dirs: the real ~/.ssh of this machine is never read or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

REPO = Path(__file__).resolve().parents[3]
SSHD_UP = REPO / "tests" / "infra" / "sshd-up.sh"
ALIAS = "devloop-test"


@dataclass(frozen=True)
class Sshd:
    dir: Path
    port: int
    user: str
    client_key: Path
    host_key: paramiko.PKey  # the server's public host key

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    if os.environ.get("DEVLOOP_SKIP_SSH") == "1":
        msg = "DEVLOOP_SKIP_SSH=1: every SSH test is SKIPPED (no OpenSSH server was used)"
        print(f"\n*** {msg} ***", file=sys.stderr)
        pytest.skip(msg)
    state = os.environ.get("DEVLOOP_TEST_SSHD_DIR")
    if not state or not (Path(state) / "env").is_file():
        state = state or "/tmp/devloop-test/sshd"
        res = subprocess.run(["bash", str(SSHD_UP), state], capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            pytest.fail(f"tests/infra/sshd-up.sh failed ({res.returncode}); set DEVLOOP_SKIP_SSH=1 to "
                        f"skip the SSH tests on purpose:\n{res.stdout}\n{res.stderr}")
    env = _read_env(Path(state) / "env")
    kind, b64 = env["SSHD_HOST_PUBKEY"].split()[:2]
    host_key = paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64))
    return Sshd(dir=Path(env["SSHD_DIR"]), port=int(env["SSHD_PORT"]), user=env["SSHD_USER"],
                client_key=Path(env["SSHD_CLIENT_KEY"]), host_key=host_key)


@dataclass(frozen=True)
class SshHome:
    """A private stand-in for ~/.ssh: config (alias devloop-test) and known_hosts."""

    dir: Path
    config: Path
    known_hosts: Path


@pytest.fixture
def ssh_home(tmp_path: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> SshHome:
    d = tmp_path / "dotssh"
    d.mkdir(mode=0o700)
    config = d / "config"
    config.write_text(textwrap.dedent(f"""\
        Host {ALIAS}
          HostName 127.0.0.1
          Port {sshd.port}
          User {sshd.user}
          IdentityFile {sshd.client_key}
          IdentitiesOnly yes
        """))
    known = d / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    monkeypatch.setenv("DEVLOOP_SSH_CONFIG", str(config))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return SshHome(d, config, known)


def write_project(root: Path, *, known_hosts: Path, workdir: Path, host: str = ALIAS,
                  extra: str = "", name: str = "ssh-test") -> Path:
    """A project folder with devloop.toml and profiles/NAME.yaml pointing at the test sshd."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "devloop.toml").write_text('[project]\nname = "sshproj"\n')
    (root / "profiles").mkdir(exist_ok=True)
    (root / "profiles" / f"{name}.yaml").write_text(
        f"kind: ssh\nhost: {host}\nknown_hosts: {known_hosts}\nworkdir: {workdir}\n{extra}")
    return root


@pytest.fixture
def ssh_project(tmp_path: Path, ssh_home: SshHome) -> Path:
    return write_project(tmp_path / "proj", known_hosts=ssh_home.known_hosts,
                         workdir=tmp_path / "remote" / "work")


def _load_profile(project: Path, name: str = "ssh-test"):
    from devloop.core.config import load_config

    config = load_config(project)
    return config.profile(name), config


@pytest.fixture
def load_profile():
    """load_profile(project, name="ssh-test") -> (Profile, Config), through the real config loader."""
    return _load_profile


@pytest.fixture
def make_project():
    """make_project(root, known_hosts=..., workdir=..., host=..., extra=...) -> root."""
    return write_project
