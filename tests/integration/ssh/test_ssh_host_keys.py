"""Host keys and the ways in: unknown and changed keys are refused (never auto-added), `devloop
trust` adds a key only when told, authentication failures name the keys tried, and ProxyJump /
ProxyCommand from the ssh config reach the host. All against the real test sshd."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devloop.core.ssh_connect import AuthFailed, HostKeyChanged, UnknownHostKey
from devloop.core.targets.base import TargetError
from devloop.core.targets.ssh import SshTarget

pytestmark = pytest.mark.ssh


def sha256_fp(pubkey_b64: str) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(pubkey_b64)).digest()).decode().rstrip("=")


def devloop(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devloop.cli", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60, input=input)


async def start_stop(project: Path, load_profile, name: str = "ssh-test") -> SshTarget:
    profile, config = load_profile(project, name)
    target = SshTarget(profile, config)
    try:
        await target.start()
    finally:
        await target.stop()
    return target


async def test_unknown_host_is_refused_with_fingerprint_and_trust_command(
        ssh_project: Path, ssh_home, sshd, load_profile) -> None:
    ssh_home.known_hosts.write_text("")
    with pytest.raises(UnknownHostKey) as err:
        await start_stop(ssh_project, load_profile)
    text = str(err.value)
    assert sha256_fp(sshd.host_key.get_base64()) in text
    assert f"[127.0.0.1]:{sshd.port}" in text
    assert "devloop trust ssh-test" in text
    assert ssh_home.known_hosts.read_text() == ""  # never a silent add


async def test_changed_host_key_is_refused_loudly(ssh_project: Path, ssh_home, sshd, load_profile) -> None:
    other = (sshd.client_key.parent / "client_ed25519.pub").read_text().split()  # another ed25519 key
    ssh_home.known_hosts.write_text(f"# old entry\n[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    before = ssh_home.known_hosts.read_text()
    with pytest.raises(HostKeyChanged) as err:
        await start_stop(ssh_project, load_profile)
    text = str(err.value)
    assert "HOST KEY CHANGED" in text and "man-in-the-middle" in text
    assert f"{ssh_home.known_hosts}:2" in text  # file:line of the old key
    assert sha256_fp(other[1]) in text and sha256_fp(sshd.host_key.get_base64()) in text
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {ssh_home.known_hosts}" in text
    assert ssh_home.known_hosts.read_text() == before

    # `devloop trust` refuses to paper over it too, and the CLI says it in one error
    res = devloop("trust", "ssh-test", "--yes", cwd=ssh_project)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "HOST KEY CHANGED" in res.stderr
    assert ssh_home.known_hosts.read_text() == before


async def test_trust_adds_the_key_only_when_confirmed(ssh_project: Path, ssh_home, sshd, load_profile) -> None:
    ssh_home.known_hosts.unlink()
    fp = sha256_fp(sshd.host_key.get_base64())

    res = devloop("trust", "ssh-test", cwd=ssh_project, input="")  # not a terminal, no --yes
    assert res.returncode == 1
    assert fp in res.stdout and "--yes" in res.stderr
    assert not ssh_home.known_hosts.exists()

    res = devloop("trust", "--profile", "ssh-test", "--yes", cwd=ssh_project)
    assert res.returncode == 0, res.stderr
    assert fp in res.stdout
    line = ssh_home.known_hosts.read_text()
    assert line == f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_key.get_base64()}\n"

    target = await start_stop(ssh_project, load_profile)  # now it connects
    assert target.info.kind == "ssh"

    res = devloop("trust", "ssh-test", "--yes", cwd=ssh_project)
    assert res.returncode == 0 and "already trusted" in res.stdout
    assert ssh_home.known_hosts.read_text() == line  # not added twice


async def test_authentication_failure_names_the_keys_tried(
        tmp_path: Path, ssh_home, sshd, make_project, load_profile) -> None:
    bad = tmp_path / "bad_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(bad)], check=True)
    missing = tmp_path / "no_such_key"
    with ssh_home.config.open("a") as f:
        f.write(f"\nHost devloop-badkey\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
                f"  IdentityFile {missing}\n  IdentitiesOnly yes\n")
    project = make_project(tmp_path / "p", known_hosts=ssh_home.known_hosts, workdir=tmp_path / "w",
                           host="devloop-badkey", extra=f"identity_file: {bad}\n")
    with pytest.raises(AuthFailed) as err:
        await start_stop(project, load_profile)
    text = str(err.value)
    assert f"{bad} (refused)" in text and f"{missing} (missing)" in text
    assert "identity_file" in text


async def test_unreachable_port_is_a_clear_error(tmp_path: Path, ssh_home, make_project, load_profile) -> None:
    project = make_project(tmp_path / "p", known_hosts=ssh_home.known_hosts, workdir=tmp_path / "w",
                           host="127.0.0.1", extra="port: 1\n")
    with pytest.raises(TargetError, match="cannot reach 127.0.0.1:1"):
        await start_stop(project, load_profile)


async def test_proxyjump_from_ssh_config(tmp_path: Path, ssh_home, sshd, make_project, load_profile) -> None:
    with ssh_home.config.open("a") as f:
        f.write(f"\nHost devloop-jumped\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
                f"  IdentityFile {sshd.client_key}\n  ProxyJump devloop-test\n")
    project = make_project(tmp_path / "p", known_hosts=ssh_home.known_hosts, workdir=tmp_path / "w",
                           host="devloop-jumped")
    profile, config = load_profile(project)
    target = SshTarget(profile, config)
    try:
        info = await target.start()
        assert "via devloop-test" in info.details["route"]
        assert len(target.conn.hops) == 1
        ch = await target.spawn(["echo", "through the jump host"])
        assert await ch.readline() == b"through the jump host\n"
        assert await ch.wait() == 0
    finally:
        await target.stop()


async def test_proxycommand_from_ssh_config(tmp_path: Path, ssh_home, sshd, make_project, load_profile) -> None:
    fake_home = tmp_path / "proxyhome"  # the OpenSSH client must not touch this machine's ~/.ssh
    fake_home.mkdir()
    proxy = (f"env HOME={fake_home} ssh -F /dev/null -i {sshd.client_key} -o IdentitiesOnly=yes "
             f"-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={ssh_home.known_hosts} "
             f"-p {sshd.port} -W %h:%p {sshd.user}@127.0.0.1")
    with ssh_home.config.open("a") as f:
        f.write(f"\nHost devloop-proxied\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
                f"  IdentityFile {sshd.client_key}\n  ProxyCommand {proxy}\n")
    project = make_project(tmp_path / "p", known_hosts=ssh_home.known_hosts, workdir=tmp_path / "w",
                           host="devloop-proxied")
    profile, config = load_profile(project)
    target = SshTarget(profile, config)
    try:
        info = await target.start()
        assert "ProxyCommand" in info.details["route"]
        ch = await target.spawn(["echo", "through the proxy command"])
        assert await ch.readline() == b"through the proxy command\n"
    finally:
        await target.stop()
