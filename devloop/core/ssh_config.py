"""Where an SSH profile really connects, and what its known_hosts files say about that host.

`resolve_endpoint` merges the profile with `~/.ssh/config` (or the file named by
`DEVLOOP_SSH_CONFIG`) the way OpenSSH does for the options devloop honours: HostName, User, Port,
IdentityFile, IdentitiesOnly, ProxyCommand, ProxyJump, UserKnownHostsFile, HostKeyAlias,
ServerAliveInterval/CountMax, ConnectTimeout. Profile fields win over the config file, as
command-line options win over it for `ssh`.

Host keys are looked up by hand (not with paramiko's SSHClient policies) so an unknown host and
a changed key give two different, precise errors: the fingerprint, the file and line, the fix.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

CONFIG_ENV = "DEVLOOP_SSH_CONFIG"
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


def home() -> Path:
    return Path(os.path.expanduser("~"))


def ssh_config_path() -> Path:
    """The ssh config devloop reads: $DEVLOOP_SSH_CONFIG, else ~/.ssh/config (may not exist)."""
    env = os.environ.get(CONFIG_ENV)
    return Path(os.path.expanduser(env)) if env else home() / ".ssh" / "config"


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


@dataclass(frozen=True)
class Endpoint:
    """One SSH hop, fully resolved."""

    alias: str  # what the user wrote (profile host or ProxyJump element)
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    known_hosts_files: tuple[str, ...]  # the first one is where `devloop trust` writes
    host_key_alias: str = ""
    proxy_command: str = ""
    proxy_jump: tuple["Endpoint", ...] = ()
    alive_interval: float = 15.0
    alive_count_max: int = 3
    connect_timeout: float = 10.0
    config_file: str = ""
    explicit_keys: bool = False  # identity files were named (profile/config), not defaults
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def known_hosts_name(self) -> str:
        """The name a known_hosts line carries for this host: `host` or `[host]:port`."""
        name = self.host_key_alias or self.hostname
        if self.port != 22 and not self.host_key_alias:
            return f"[{name}]:{self.port}"
        return name

    def describe(self) -> str:
        via = f" via {' -> '.join(j.alias for j in self.proxy_jump)}" if self.proxy_jump else ""
        via = via or (" via ProxyCommand" if self.proxy_command else "")
        return f"{self.user}@{self.hostname}:{self.port}{via}"


def _split_user_host_port(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (ProxyJump syntax; `ssh://` allowed)."""
    if spec.startswith("ssh://"):
        spec = spec[len("ssh://"):]
    user = None
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
    port = None
    if spec.startswith("["):  # [v6]:port
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return user, host, port
    if spec.count(":") == 1:
        host, _, p = spec.partition(":")
        if p.isdigit():
            return user, host, int(p)
    return user, spec, port


def _load_config(path: Path) -> paramiko.SSHConfig | None:
    if not path.is_file():
        return None
    return paramiko.SSHConfig.from_path(str(path))


def resolve_endpoint(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    config_path: Path | None = None,
    _depth: int = 0,
) -> Endpoint:
    """Merge profile fields with the ssh config entry for `host` (an alias or a real name)."""
    path = config_path or ssh_config_path()
    cfg = _load_config(path)
    spec_user, spec_host, spec_port = _split_user_host_port(host)
    opts = cfg.lookup(spec_host) if cfg is not None else {"hostname": spec_host}

    hostname = opts.get("hostname", spec_host)
    user = user or spec_user or opts.get("user") or getpass.getuser()
    port = int(port or spec_port or opts.get("port") or 22)

    files: list[str] = []
    if identity_file:
        files.append(_expand(identity_file))
    files += [_expand(f) for f in opts.get("identityfile", [])]
    explicit = bool(files)
    if not files:
        files = [str(home() / ".ssh" / k) for k in DEFAULT_KEYS]
    seen: set[str] = set()
    files = [f for f in files if not (f in seen or seen.add(f))]

    if known_hosts:
        kh = [_expand(known_hosts)]
    elif opts.get("userknownhostsfile"):
        kh = [_expand(f) for f in str(opts["userknownhostsfile"]).split()]
    else:
        kh = [str(home() / ".ssh" / "known_hosts")]

    proxy_command = opts.get("proxycommand", "") or ""
    if proxy_command.lower() == "none":
        proxy_command = ""
    jumps: list[Endpoint] = []
    jump_spec = opts.get("proxyjump", "") or ""
    if jump_spec and jump_spec.lower() != "none" and not proxy_command:
        if _depth > 8:
            raise ValueError(f"ProxyJump chain for {host!r} is longer than 8 hops (a loop?)")
        for hop in jump_spec.split(","):
            hop = hop.strip()
            if hop:
                # A jump host's own settings come from the ssh config, like OpenSSH's `ssh -J`.
                jumps.append(resolve_endpoint(hop, known_hosts=known_hosts, config_path=path,
                                              _depth=_depth + 1))

    def _num(key: str, default: float) -> float:
        try:
            return float(opts.get(key, default))
        except (TypeError, ValueError):
            return default

    return Endpoint(
        alias=host,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=tuple(files),
        identities_only=str(opts.get("identitiesonly", "no")).lower() == "yes",
        known_hosts_files=tuple(kh),
        host_key_alias=opts.get("hostkeyalias", "") or "",
        proxy_command=proxy_command,
        proxy_jump=tuple(jumps),
        alive_interval=_num("serveraliveinterval", 15.0) or 15.0,
        alive_count_max=int(_num("serveralivecountmax", 3)) or 3,
        connect_timeout=_num("connecttimeout", 10.0) or 10.0,
        config_file=str(path) if cfg is not None else "",
        explicit_keys=explicit,
    )


# -- host keys ------------------------------------------------------------------------------------


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint: `SHA256:` + unpadded base64 of the key blob's sha256."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class KnownKey:
    file: str
    line: int
    keytype: str
    key: paramiko.PKey


def _name_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    return pattern == name


def known_keys(files: tuple[str, ...] | list[str], name: str) -> list[KnownKey]:
    """Every key the known_hosts files hold for `name` (hashed entries included)."""
    found: list[KnownKey] = []
    for file in files:
        try:
            lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("@"):
                continue  # @cert-authority / @revoked markers: not supported, never matched
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
            except (paramiko.SSHException, ValueError, TypeError):
                continue
            if entry is None or entry.key is None:
                continue
            if any(_name_matches(name, h) for h in entry.hostnames):
                found.append(KnownKey(file, lineno, entry.key.get_name(), entry.key))
    return found


def append_known_host(file: str, name: str, key: paramiko.PKey) -> None:
    """Add `name keytype base64` to a known_hosts file (folder 0700, file 0600 when created)."""
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    prefix = ""
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(f"{prefix}{name} {key.get_name()} {key.get_base64()}\n")
