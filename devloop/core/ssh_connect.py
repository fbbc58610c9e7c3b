"""Open one verified, authenticated paramiko Transport to an `Endpoint` (blocking; run in a thread).

Three stages, three error types, so `devloop doctor` and the reconnect loop can tell them apart:
`Unreachable` (socket, proxy, handshake: worth retrying), host-key errors (never retried, never
auto-added), `AuthFailed` (names every key file tried).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field

import paramiko

from devloop.core.ssh_config import Endpoint, KnownKey, fingerprint, known_keys
from devloop.core.targets.base import TargetError


class Unreachable(TargetError):
    """No SSH conversation could be had (refused, timed out, proxy failed, handshake broke)."""


class UnknownHostKey(TargetError):
    def __init__(self, message: str, *, hint: str, name: str, key: paramiko.PKey, file: str) -> None:
        super().__init__(message, hint=hint)
        self.name = name
        self.key = key
        self.file = file  # the known_hosts file `devloop trust` adds it to


class HostKeyChanged(TargetError):
    def __init__(self, message: str, *, hint: str, name: str, key: paramiko.PKey,
                 known: list[KnownKey]) -> None:
        super().__init__(message, hint=hint)
        self.name = name
        self.key = key
        self.known = known


class AuthFailed(TargetError):
    pass


@dataclass
class Connection:
    """A live transport plus the jump transports it rides on (closed together)."""

    endpoint: Endpoint
    transport: paramiko.Transport
    hops: list[paramiko.Transport] = field(default_factory=list)
    key_used: str = ""
    _heartbeat: threading.Thread | None = None
    _closing: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.transport.is_active()

    def close(self) -> None:
        self._closing.set()
        for t in [self.transport, *reversed(self.hops)]:
            try:
                t.close()
            except Exception:  # noqa: BLE001 - closing a dead transport is fine
                pass

    def start_heartbeat(self) -> None:
        """ServerAliveInterval/CountMax as OpenSSH does it: a keepalive request that wants a
        reply; no reply within interval * count -> the transport is closed, so every channel
        read sees the loss instead of hanging on a dead TCP connection."""
        ep = self.endpoint
        self.transport.set_keepalive(int(ep.alive_interval))

        def beat() -> None:
            while not self._closing.wait(ep.alive_interval):
                if not self.transport.is_active():
                    return
                replied = threading.Event()

                def ask() -> None:
                    try:
                        self.transport.global_request("keepalive@openssh.com", wait=True)
                    except Exception:  # noqa: BLE001
                        pass
                    replied.set()

                threading.Thread(target=ask, daemon=True, name="devloop-ssh-ask").start()
                if not replied.wait(ep.alive_interval * ep.alive_count_max):
                    if not self._closing.is_set():
                        self.transport.close()
                    return

        self._heartbeat = threading.Thread(target=beat, daemon=True, name="devloop-ssh-heartbeat")
        self._heartbeat.start()


def _socket(ep: Endpoint, hops: list[paramiko.Transport], profile: str):
    """A socket-like object to ep: direct TCP, a ProxyCommand, or a channel through ProxyJump."""
    if ep.proxy_command:
        try:
            return paramiko.ProxyCommand(ep.proxy_command)
        except Exception as exc:  # noqa: BLE001 - ProxyCommandFailure and OSError
            raise Unreachable(f"ssh {ep.alias}: ProxyCommand failed: {exc}",
                              hint=f"check ProxyCommand for {ep.alias!r} in {ep.config_file or '~/.ssh/config'}") from exc
    if ep.proxy_jump:
        via = None
        for hop in ep.proxy_jump:
            conn = _connect_one(hop, via, hops, profile)
            hops.append(conn.transport)
            via = conn.transport
        assert via is not None
        try:
            return via.open_channel("direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0),
                                    timeout=ep.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(
                f"ssh {ep.alias}: jump host {ep.proxy_jump[-1].alias} could not reach "
                f"{ep.hostname}:{ep.port}: {exc}",
                hint="check HostName/Port, and that the jump host allows TCP forwarding") from exc
    try:
        sock = socket.create_connection((ep.hostname, ep.port), timeout=ep.connect_timeout)
        # small packets (a request through a forwarded port, a protocol line) go out at once,
        # as OpenSSH does: Nagle + delayed ACK cost ~40 ms per round trip
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except OSError as exc:
        raise Unreachable(
            f"ssh {ep.alias}: cannot reach {ep.hostname}:{ep.port}: {exc.strerror or exc}",
            hint=f"check host/port in profile {profile!r} (or ~/.ssh/config) and that sshd runs there",
        ) from exc


def _prefer_known_types(transport: paramiko.Transport, known: list[KnownKey]) -> None:
    """Ask for the key type we already know first, as OpenSSH does: a host with several keys
    then shows the one on file rather than looking 'changed'."""
    if not known:
        return
    opts = transport.get_security_options()
    types = list(opts.key_types)
    wanted = [k.keytype for k in known if k.keytype in types]
    if wanted:
        first = list(dict.fromkeys(wanted))
        opts.key_types = first + [t for t in types if t not in first]


def check_host_key(ep: Endpoint, key: paramiko.PKey, known: list[KnownKey], profile: str) -> None:
    name = ep.known_hosts_name
    same_type = [k for k in known if k.keytype == key.get_name()]
    if any(k.key == key for k in same_type):
        return
    fp = fingerprint(key)
    kh_file = ep.known_hosts_files[0]
    if same_type or known:
        old = same_type or known
        where = ", ".join(f"{k.file}:{k.line}" for k in old)
        raise HostKeyChanged(
            f"HOST KEY CHANGED for {name}: the server offers {key.get_name()} {fp}, but "
            f"{where} holds {old[0].keytype} {fingerprint(old[0].key)}. Someone may be "
            f"intercepting the connection (man-in-the-middle), or the host was reinstalled. "
            f"devloop refuses to connect",
            hint=(f"only if you know the change is legitimate: ssh-keygen -R '{name}' -f "
                  f"{old[0].file}  then  devloop trust {profile}"),
            name=name, key=key, known=old,
        )
    raise UnknownHostKey(
        f"unknown host key for {name}: {key.get_name()} {fp} (not in {', '.join(ep.known_hosts_files)})",
        hint=(f"check the fingerprint with the host's owner (ssh-keygen -lf /etc/ssh/ssh_host_*.pub "
              f"there), then run: devloop trust {profile}  (adds it to {kh_file})"),
        name=name, key=key, file=kh_file,
    )


def handshake(ep: Endpoint, sock, profile: str) -> tuple[paramiko.Transport, paramiko.PKey, list[KnownKey]]:
    """Key exchange only: the transport, the server's host key, what known_hosts says."""
    known = known_keys(ep.known_hosts_files, ep.known_hosts_name)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = ep.connect_timeout
    _prefer_known_types(transport, known)
    # AES-GCM first where the server has it: one AEAD pass instead of CTR + HMAC, ~1.5x the
    # bytes per second in paramiko (a forwarded port's download, a big sync); the rest follow
    options = transport.get_security_options()
    options.ciphers = tuple(sorted(options.ciphers, key=lambda c: 0 if "-gcm@" in c else 1))
    try:
        transport.start_client(timeout=ep.connect_timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise Unreachable(f"ssh {ep.alias}: SSH handshake with {ep.hostname}:{ep.port} failed: {exc}",
                          hint="is an SSH server listening on that port?") from exc
    return transport, transport.get_remote_server_key(), known


def _load_key(path: str) -> tuple[paramiko.PKey | None, str]:
    """(key, note): note says why a file was skipped."""
    if not os.path.exists(path):
        return None, "missing"
    try:
        return paramiko.PKey.from_path(path), ""
    except paramiko.PasswordRequiredException:
        return None, "encrypted: load it into ssh-agent (ssh-add)"
    except (paramiko.SSHException, OSError, ValueError) as exc:
        return None, f"unreadable: {exc}"


def authenticate(transport: paramiko.Transport, ep: Endpoint, profile: str) -> str:
    """Public-key auth with the identity files, then ssh-agent keys; which key worked."""
    tried: list[str] = []
    for path in ep.identity_files:
        key, note = _load_key(path)
        if key is None:
            if ep.explicit_keys or note != "missing":
                tried.append(f"{path} ({note})")
            continue
        try:
            transport.auth_publickey(ep.user, key)
        except paramiko.BadAuthenticationType as exc:
            raise AuthFailed(
                f"ssh {ep.user}@{ep.alias}: the server does not accept public keys "
                f"(it allows: {', '.join(exc.allowed_types)})",
                hint="devloop authenticates with keys only; enable PubkeyAuthentication on the server",
            ) from exc
        except paramiko.AuthenticationException:
            tried.append(f"{path} (refused)")
            continue
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(f"ssh {ep.alias}: connection dropped during authentication: {exc}") from exc
        if transport.is_authenticated():
            return path
    if not ep.identities_only and os.environ.get("SSH_AUTH_SOCK"):
        try:
            agent_keys = paramiko.Agent().get_keys()
        except (paramiko.SSHException, OSError):
            agent_keys = ()
        for key in agent_keys:
            label = f"ssh-agent {key.get_name()} {fingerprint(key)}"
            try:
                transport.auth_publickey(ep.user, key)
            except paramiko.AuthenticationException:
                tried.append(f"{label} (refused)")
                continue
            if transport.is_authenticated():
                return label
    looked = ", ".join(tried) if tried else (
        "none found (looked for " + ", ".join(ep.identity_files) + "; no ssh-agent keys)")
    raise AuthFailed(
        f"ssh {ep.user}@{ep.alias}: authentication failed; keys tried: {looked}",
        hint=(f"set identity_file: in profile {profile!r} (or IdentityFile in ~/.ssh/config) to a key "
              f"whose public half is in ~{ep.user}/.ssh/authorized_keys on {ep.hostname}"),
    )


def _connect_one(ep: Endpoint, via, hops: list[paramiko.Transport], profile: str) -> Connection:
    sock = _socket(ep, hops, profile) if via is None else None
    if via is not None:
        try:
            sock = via.open_channel("direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0),
                                    timeout=ep.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(f"ssh: jump host could not reach {ep.hostname}:{ep.port}: {exc}") from exc
    transport, key, known = handshake(ep, sock, profile)
    try:
        check_host_key(ep, key, known, profile)
        used = authenticate(transport, ep, profile)
    except BaseException:
        transport.close()
        raise
    return Connection(ep, transport, key_used=used)


def connect(ep: Endpoint, profile: str) -> Connection:
    """Connect, verify the host key, authenticate; keepalive heartbeat started."""
    hops: list[paramiko.Transport] = []
    try:
        conn = _connect_one(ep, None, hops, profile)
    except BaseException:
        for t in reversed(hops):
            t.close()
        raise
    conn.hops = hops
    conn.start_heartbeat()
    return conn


def fetch_host_key(ep: Endpoint, profile: str) -> tuple[paramiko.PKey, list[KnownKey]]:
    """The server's host key (jump hosts are verified as usual): for `devloop trust`."""
    hops: list[paramiko.Transport] = []
    try:
        sock = _socket(ep, hops, profile)
        transport, key, known = handshake(ep, sock, profile)
        transport.close()
        return key, known
    finally:
        for t in reversed(hops):
            t.close()
