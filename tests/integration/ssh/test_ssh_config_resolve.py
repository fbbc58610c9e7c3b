"""How a profile's `host` is resolved through an ssh config file, and known_hosts lookups
(hashed names included). Pure file work: no server needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from devloop.core.ssh_config import append_known_host, fingerprint, known_keys, resolve_endpoint


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "config"
    p.write_text(
        "Host gpu\n  HostName gpu.internal\n  User alice\n  Port 2200\n  IdentityFile ~/keys/gpu\n"
        "  ProxyJump bastion\n  ServerAliveInterval 5\n"
        "Host bastion\n  HostName bastion.example.com\n  User jump\n"
        "Host proxied\n  HostName 10.0.0.5\n  ProxyCommand nc %h %p\n"
        "Host *\n  UserKnownHostsFile ~/kh/known_hosts\n")
    return p


def test_alias_brings_hostname_user_port_keys_and_jump(cfg: Path) -> None:
    ep = resolve_endpoint("gpu", config_path=cfg)
    assert (ep.hostname, ep.user, ep.port) == ("gpu.internal", "alice", 2200)
    assert ep.identity_files[0].endswith("/keys/gpu") and not ep.identity_files[0].startswith("~")
    assert ep.explicit_keys and ep.alive_interval == 5
    assert [j.hostname for j in ep.proxy_jump] == ["bastion.example.com"]
    assert ep.proxy_jump[0].user == "jump"
    assert ep.known_hosts_name == "[gpu.internal]:2200"
    assert ep.known_hosts_files[0].endswith("/kh/known_hosts")


def test_profile_fields_win_over_the_config(cfg: Path, tmp_path: Path) -> None:
    ep = resolve_endpoint("gpu", port=22, user="bob", identity_file="/k/id", known_hosts=str(tmp_path / "kh"),
                          config_path=cfg)
    assert (ep.port, ep.user, ep.identity_files[0], ep.known_hosts_files) == (22, "bob", "/k/id", (str(tmp_path / "kh"),))
    assert ep.known_hosts_name == "gpu.internal"


def test_user_host_port_spec_and_proxy_command(cfg: Path) -> None:
    ep = resolve_endpoint("carol@box.lan:2022", config_path=cfg)
    assert (ep.user, ep.hostname, ep.port) == ("carol", "box.lan", 2022)
    assert not ep.explicit_keys and ep.identity_files[0].endswith(".ssh/id_ed25519")
    proxied = resolve_endpoint("proxied", config_path=cfg)
    assert proxied.proxy_command == "nc 10.0.0.5 22" and proxied.proxy_jump == ()


def test_known_hosts_lookup_plain_and_hashed(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], check=True)
    key = paramiko.PKey.from_path(str(key_file))
    kh = tmp_path / "known_hosts"
    append_known_host(str(kh), "[h.example]:2200", key)
    hashed = paramiko.HostKeys.hash_host("other.example")
    with kh.open("a") as f:
        f.write(f"# comment\n@cert-authority *.example {key.get_name()} {key.get_base64()}\n"
                f"{hashed} {key.get_name()} {key.get_base64()}\n")
    assert [k.line for k in known_keys([str(kh)], "[h.example]:2200")] == [1]
    assert [k.line for k in known_keys([str(kh)], "other.example")] == [4]
    assert known_keys([str(kh)], "h.example") == []  # the port is part of the name
    assert fingerprint(key).startswith("SHA256:") and "=" not in fingerprint(key)
    out = subprocess.run(["ssh-keygen", "-lf", str(key_file) + ".pub"], capture_output=True, text=True).stdout
    assert fingerprint(key) in out  # the same fingerprint OpenSSH prints
    assert oct(kh.stat().st_mode & 0o777) == "0o600"
