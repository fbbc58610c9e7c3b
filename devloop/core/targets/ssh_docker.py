"""An ssh profile with `docker:`: the dev container runs on the SSH host's Docker engine.

The Docker target does all the container work (image, GPUs, limits, exec channels, sync through
the agent, snapshots); only the way to the engine differs. devloop's own SSH connection -- the
one whose host key was checked against known_hosts and whose ~/.ssh/config route was followed --
opens a channel per HTTP connection running `docker system dial-stdio` on the host (what the
docker CLI does for `ssh://` hosts), and docker-py's SSH connection pool speaks the engine API
over it. docker-py's own SSH client is never used: it would read host keys and routes its own way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from docker.transport.basehttpadapter import BaseHTTPAdapter
from docker.transport.sshconn import SSHConnection, SSHConnectionPool

from devloop.core.ssh_config import Endpoint
from devloop.core.ssh_connect import AuthFailed, Connection, HostKeyChanged, UnknownHostKey, Unreachable, connect
from devloop.core.targets.base import Channel, ConnectionLost, TargetError, TargetInfo
from devloop.core.targets.docker import DockerTarget
from devloop.core.targets.ssh import connection_lost, profile_endpoint, require_host, run_command

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from devloop.core.config import Config, Profile

BASE_URL = "http+docker://ssh"  # docker-py takes attach sockets from paramiko channels for this URL
DOCKER_BLOCK_ONLY = ("image", "build", "shm_size", "volumes", "network", "user", "cpu", "memory")


def container_profile(profile: "Profile") -> "Profile":
    """The ssh profile seen as a docker profile: the `docker:` block's keys over the ssh ones
    (env merged, the block winning), the host's engine reached by dial-stdio, not docker_host."""
    block = dict(profile.docker or {})
    env = {**dict(profile.env or {}), **dict(block.get("env") or {})}
    values: dict[str, Any] = {k: block[k] for k in DOCKER_BLOCK_ONLY if k in block}
    for key in ("gpus", "setup", "keep", "workdir"):
        if key in block:
            values[key] = block[key]
    values["python"] = block.get("python")  # the host's interpreter is not the container's
    if "workdir" not in block:
        values["workdir"] = None  # the ssh workdir is a host path; the container uses the image's
    values["volumes"] = tuple(block.get("volumes") or ())
    return dataclasses.replace(profile, kind="docker", env=env, docker_host=None, **values)


class _DialConnection(SSHConnection):
    """One HTTP connection = one SSH channel running `docker system dial-stdio` on the host."""

    def __init__(self, transport: Any, dial: str, timeout: float) -> None:
        super().__init__(ssh_transport=transport, timeout=timeout)
        self.dial = dial

    def connect(self) -> None:
        chan = self.ssh_transport.open_session(timeout=30)
        chan.settimeout(self.timeout)
        chan.exec_command(self.dial)
        self.sock = chan


class _DialPool(SSHConnectionPool):
    def __init__(self, transport: Any, dial: str, timeout: float, maxsize: int) -> None:
        super().__init__(ssh_client=None, timeout=timeout, maxsize=maxsize)
        self.ssh_transport = transport
        self.dial = dial

    def _new_conn(self) -> _DialConnection:
        return _DialConnection(self.ssh_transport, self.dial, self.timeout)


class DialStdioAdapter(BaseHTTPAdapter):
    """A requests adapter whose connections are dial-stdio channels on an existing transport."""

    def __init__(self, transport: Any, dial: str, timeout: float = 120, maxsize: int = 10) -> None:
        self.transport = transport
        self.dial = dial
        self.timeout = timeout
        self.maxsize = maxsize
        self._pool: _DialPool | None = None
        super().__init__()

    def get_connection(self, url: Any, proxies: Any = None) -> _DialPool:
        if self._pool is None:
            self._pool = _DialPool(self.transport, self.dial, self.timeout, self.maxsize)
        return self._pool

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> _DialPool:
        return self.get_connection(request.url, proxies)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        super().close()


def client_over(conn: Connection, dial: str, timeout: float = 120) -> "docker.DockerClient":
    """A DockerClient whose every request rides `conn` through `dial` (a dial-stdio command)."""
    import docker
    from docker.constants import DEFAULT_DOCKER_API_VERSION

    api = docker.APIClient(base_url="tcp://127.0.0.1:9", version="1.24", timeout=timeout)
    adapter = DialStdioAdapter(conn.transport, dial, timeout)
    api.mount(BASE_URL, adapter)
    api._custom_adapter = adapter
    api.base_url = BASE_URL
    server = api.version(api_version=False).get("ApiVersion") or "1.24"
    api._version = min(server, DEFAULT_DOCKER_API_VERSION, key=lambda v: tuple(int(x) for x in v.split(".")))
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = api
    return client


class SshDockerTarget(DockerTarget):
    """kind ssh + `docker:`: a DockerTarget whose engine is on the SSH host."""

    kind = "ssh"

    def __init__(self, profile: "Profile", config: "Config") -> None:
        require_host(profile)
        super().__init__(container_profile(profile), config)
        self.ssh_profile = profile
        self.remote_engine = (profile.docker or {}).get("docker_host")
        self.conn: Connection | None = None
        self._endpoint: Endpoint | None = None
        self._spawned: list[Any] = []  # channels of this connection: their processes outlive a drop

    # -- the way to the engine ---------------------------------------------------------------------
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = profile_endpoint(self.ssh_profile)
        return self._endpoint

    def _dial_command(self) -> str:
        prefix = f"DOCKER_HOST={shlex.quote(self.remote_engine)} " if self.remote_engine else ""
        return f"{prefix}exec docker system dial-stdio"

    def _where(self) -> str:
        ep = self.endpoint()
        engine = self.remote_engine or "its default engine"
        return f"{ep.user}@{ep.alias} ({engine})"

    def _ensure_ssh(self) -> Connection:
        """The SSH connection, opened (host key checked) or reopened after a drop."""
        if self.conn is not None and self.conn.active:
            return self.conn
        self._forget_connection()
        self.conn = connect(self.endpoint(), self.ssh_profile.name)
        return self.conn

    def _forget_connection(self) -> None:
        """The connection dropped: the engine client, container handle and info rode on it."""
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self._client = None
        self._container = None
        self._info = None

    def _lost(self) -> ConnectionLost:
        return connection_lost(self.endpoint(), "devloop reconnects by itself and adopts the container again")

    def _connect_engine(self) -> "tuple[docker.DockerClient, str]":
        conn = self._ensure_ssh()
        code, out, err = run_command(conn, "command -v docker", None, 30)
        if code != 0 or not out.strip():
            raise TargetError(
                f"profile {self.ssh_profile.name!r}: `docker` was not found on {conn.endpoint.user}@"
                f"{conn.endpoint.alias} (its `docker:` block runs the dev container there)",
                hint="install Docker on that host (the docker CLI and dockerd), or remove `docker:` "
                     "from the profile to run on the host itself")
        try:
            client = client_over(conn, self._dial_command())
        except Exception as exc:  # noqa: BLE001 - requests, docker and paramiko errors alike
            if not conn.active:
                raise ConnectionLost(f"the SSH connection to {conn.endpoint.alias} dropped") from exc
            _, _, err = run_command(conn, self._dial_command() + " </dev/null", None, 15)
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise TargetError(
                f"cannot reach the Docker engine on {self._where()}: "
                f"{(detail[-1] if detail else str(exc).splitlines()[0])[:300]}",
                hint="start dockerd on that host, let the SSH user use it (the `docker` group), or "
                     "set `docker_host:` in the profile's docker block (e.g. unix:///run/user/1000/docker.sock)",
            ) from None
        return client, f"{self._where()} over ssh"

    # -- Target -----------------------------------------------------------------------------------
    async def start(self) -> TargetInfo:
        orphans: list[int] = []
        old_container = self.container_id
        if self.conn is not None and not self.conn.active:
            # what ran over the dropped connection still runs in the container (an old kernel
            # holding memory and GPUs): stopped below when the same container is adopted again
            orphans = [c.pid for c in self._spawned if c.pid and c._exit_code is None]
            self._spawned = []
            self._forget_connection()
        info = await super().start()
        if orphans and self.container_id == old_container:
            await asyncio.to_thread(self._kill_in_container, orphans)
        ep = self.endpoint()
        self._info = dataclasses.replace(
            info, kind="ssh", id=f"{info.details.get('container', info.id)}@{ep.alias}",
            details={**dict(info.details), "host": ep.hostname, "port": ep.port, "user": ep.user,
                     "route": ep.describe(), "container_id": info.id,
                     "key": self.conn.key_used if self.conn is not None else ""})
        return self._info

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> Channel:
        if self.conn is None or not self.conn.active:
            raise self._lost()
        try:
            channel = await super().spawn(argv, env, cwd)
        except TargetError:
            raise
        except Exception as exc:  # noqa: BLE001 - requests/paramiko errors of a dropped transport
            if self.conn is None or not self.conn.active:
                raise self._lost() from exc
            raise
        self._spawned = [c for c in self._spawned if c._exit_code is None and not c._closed] + [channel]
        return channel

    def _kill_in_container(self, pids: list[int]) -> None:
        script = 'for p; do kill -KILL -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; done; true'
        try:
            self._container.exec_run(["/bin/sh", "-c", script, "sh", *map(str, pids)], user="root")
        except Exception:  # noqa: BLE001 - best effort: the session goes on with a fresh kernel
            pass

    def _volume(self, spec: str) -> str:
        src = str(spec).partition(":")[0]
        if not src.startswith("/"):
            raise TargetError(
                f"profile {self.ssh_profile.name!r}: volume {spec!r} must name an absolute path on the SSH host",
                hint="write the host path in full, e.g. /data/datasets:/data:ro")
        return str(spec)

    async def alive(self) -> bool:
        if self.conn is None or not self.conn.active:
            return False
        return await super().alive()

    async def stop(self) -> None:
        try:
            if self.conn is not None and self.conn.active:
                await super().stop()
            else:  # the container is out of reach; the next start adopts or replaces it
                self._container = None
                self._info = None
        finally:
            self._close_connection()

    async def detach(self) -> None:
        """The container (and the session kernel in it) stays; devloop's SSH connection closes."""
        try:
            await super().detach()
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        """Drop the engine client and devloop's SSH connection (the container is not touched)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a client on a dead transport
                pass
            self._client = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop_now(self) -> None:
        if self.conn is None or not self.conn.active:
            self._container = None
            return
        super().stop_now()

    async def doctor_checks(self) -> list[tuple[str, bool, str]]:
        """SSH first (reachable, host key, authenticated), then the engine and container checks."""
        try:
            ep = self.endpoint()
            await asyncio.to_thread(self._ensure_ssh)
        except Unreachable as exc:
            return [("reachable", False, str(exc))]
        except (UnknownHostKey, HostKeyChanged) as exc:
            return [("reachable", True, ep.describe()), ("host key", False, str(exc))]
        except AuthFailed as exc:
            return [("reachable", True, ep.describe()), ("authenticated", False, str(exc))]
        except TargetError as exc:
            return [("ssh config", False, str(exc))]
        checks = [("reachable", True, ep.describe()),
                  ("authenticated", True, f"as {ep.user} with {self.conn.key_used if self.conn else '?'}")]
        return checks + await super().doctor_checks()
