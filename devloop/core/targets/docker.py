"""The Docker target: a long-lived dev container the project is synced into.

`start()` finds the container labelled for this project + profile (so a second `devloop run`
with `keep: true` costs a lookup, not a container start) or creates one that sleeps forever;
the agent bundle is copied in by content hash; every process (kernel, sync receiver, setup)
is a `docker exec` with stdin attached (`docker_exec.DockerExecChannel`). `stop()` removes the
container unless the profile keeps it, and an atexit hook removes it if the process ends first.

The docker SDK is blocking: every call runs in `asyncio.to_thread`. Images are never pulled
implicitly: a missing image is an error that says how to pull or build it.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from devloop.core.agent_bundle import bundle, bundle_name
from devloop.core.config import parse_quantity
from devloop.core.targets.base import Channel, Snapshot, Target, TargetError, TargetInfo
from devloop.core.targets.docker_exec import DockerExecChannel, wrap_argv

if TYPE_CHECKING:  # pragma: no cover
    import docker

    from devloop.core.config import Config, Profile

AGENT_DIR = "/tmp/devloop"
DEFAULT_WORKDIR = "/workspace"
LABEL_PROJECT = "devloop.project"
LABEL_PROFILE = "devloop.profile"
LABEL_ROOT = "devloop.root-hash"
LABEL_SPEC = "devloop.spec-hash"
_NO_GPU_RUNTIME = "could not select device driver"


def _short_hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _dns_name(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.") or "x"


def engine_address(profile: "Profile") -> tuple[str | None, Any, str]:
    """(base_url or None for the SDK default, TLS config or False, where it came from).

    Precedence as the docker CLI: the profile's `docker_host` (a URL, or a context name), then
    DOCKER_HOST, then DOCKER_CONTEXT, then the current context of ~/.docker/config.json.
    """
    from docker.context import ContextAPI

    def from_context(name: str | None, origin: str) -> tuple[str | None, Any, str]:
        try:
            ctx = ContextAPI.get_context(name)
        except Exception as exc:  # noqa: BLE001 - the SDK raises several kinds here
            raise TargetError(f"docker context {name!r} ({origin}) cannot be read: {exc}",
                              hint="list contexts with `docker context ls`") from exc
        if ctx is None:
            raise TargetError(f"docker context {name!r} ({origin}) does not exist",
                              hint="list contexts with `docker context ls`, or set DOCKER_HOST")
        return ctx.Host, (ctx.TLSConfig or False), f"{origin} (context {ctx.Name})"

    if profile.docker_host:
        where = f"profile {profile.name!r} docker_host"
        if "://" in profile.docker_host:
            return profile.docker_host, False, where
        return from_context(profile.docker_host, where)
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"], False, "DOCKER_HOST"
    if os.environ.get("DOCKER_CONTEXT"):
        return from_context(os.environ["DOCKER_CONTEXT"], "DOCKER_CONTEXT")
    host, tls, where = from_context(None, "current docker context")
    return host, tls, where


def connect(profile: "Profile") -> "tuple[docker.DockerClient, str]":
    """A client that has answered a ping, and a description of the engine for messages."""
    import docker

    base_url, tls, origin = engine_address(profile)
    shown = base_url or "unix:///var/run/docker.sock"
    kwargs: dict[str, Any] = {"timeout": 120}
    use_env = base_url is None
    try:
        client = docker.from_env(**kwargs) if use_env else docker.DockerClient(base_url=base_url, tls=tls, **kwargs)
        client.api.timeout = 10
        client.ping()
        client.api.timeout = 120
    except Exception as exc:  # noqa: BLE001 - DockerException, requests' and socket errors alike
        raise TargetError(
            f"cannot reach the Docker engine at {shown} (from {origin}): {str(exc).splitlines()[0][:200]}",
            hint="start the Docker engine (`sudo systemctl start docker`, or Docker Desktop) or point "
                 "DOCKER_HOST at a running one's socket (export DOCKER_HOST=unix:///path/docker.sock), "
                 "or set `docker_host:` in the profile",
        ) from exc
    return client, f"{shown} ({origin})"


def device_requests(gpus: Any) -> list:
    """The profile's `gpus` as docker DeviceRequests ("all", a count, or device ids)."""
    from docker.types import DeviceRequest

    if gpus in (None, 0, "", ()):
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]


class DockerTarget(Target):
    kind = "docker"
    idle_stop_ends_environment = True

    def __init__(self, profile: "Profile", config: "Config") -> None:
        self.profile = profile
        self.config = config
        self.project = config.project.name
        self.root_hash = _short_hash(str(Path(config.root).resolve()))
        self.python = profile.python or getattr(config.run, "python", None) or "python3"
        self._client: "docker.DockerClient | None" = None
        self._engine = ""
        self._container: Any = None
        self._info: TargetInfo | None = None
        self._bundle_path = ""
        self._channels: "weakref.WeakSet[DockerExecChannel]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._owned = False  # this process created (or adopted) a container it must remove
        self._oom_seen = 0
        self._baseline: threading.Thread | None = None
        self._gpus_seen: list[str] = []

    # ------------------------------------------------------------------ info
    @property
    def info(self) -> TargetInfo:
        if self._info is None:
            raise TargetError("the docker target has not been started")
        return self._info

    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container is not None else None

    def labels(self) -> dict[str, str]:
        return {LABEL_PROJECT: self.project, LABEL_PROFILE: self.profile.name, LABEL_ROOT: self.root_hash}

    def _connect_engine(self) -> "tuple[docker.DockerClient, str]":
        """The engine client and its description; the ssh target's `docker:` reaches it otherwise."""
        return connect(self.profile)

    def container_name(self) -> str:
        return _dns_name(f"devloop-{self.project}-{self.profile.name}-{self.root_hash[:8]}")

    # ------------------------------------------------------------------ start
    async def start(self) -> TargetInfo:
        return await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> TargetInfo:
        with self._lock:
            if self._client is None:
                self._client, self._engine = self._connect_engine()
            container = self._find_container()
            if container is None:
                container = self._create_container()
            self._container = container
            self._owned = True
            _LIVE.add(self)
            self._bundle_path = self._copy_bundle()
            image_ref, digest = self._image_identity()
            workdir = container.attrs["Config"].get("WorkingDir") or DEFAULT_WORKDIR
            # the OOM-kill baseline (explain_exit) costs an exec: read it off the start path
            self._baseline = threading.Thread(target=self._read_oom_baseline, args=(container,), daemon=True)
            self._baseline.start()
            self._info = TargetInfo(
                kind="docker", id=container.id[:12], workdir=workdir, python=self.python,
                image=image_ref, image_digest=digest,
                gpus_requested="" if self.profile.gpus in (None, 0) else str(self.profile.gpus),
                details={"container": container.name, "engine": self._engine, "keep": self.profile.keep},
            )
            return self._info

    def _find_container(self) -> Any:
        """The labelled container for this project + profile, running and built from the same
        spec; a stale or stopped one that cannot restart is removed (and None returned)."""
        import docker.errors

        filters = {"label": [f"{k}={v}" for k, v in self.labels().items()]}
        # ignore_removed: one removed between the listing and its inspect (an idle stop, another
        # devloop) is not an error
        found = self._client.containers.list(all=True, ignore_removed=True, filters=filters)
        spec = self._spec_hash()
        keep = None
        for c in found:
            if keep is None and c.labels.get(LABEL_SPEC) == spec:
                keep = c
            else:
                self._remove(c)
        if keep is None:
            return None
        if keep.status != "running":
            try:
                keep.start()
                keep.reload()
            except docker.errors.APIError:
                self._remove(keep)
                return None
        return keep

    def _spec(self) -> dict[str, Any]:
        p = self.profile
        build = dict(p.build or {})
        if build:
            dockerfile = self._build_context() / str(build.get("dockerfile") or "Dockerfile")
            build["dockerfile-sha"] = _short_hash(dockerfile.read_text()) if dockerfile.is_file() else ""
        return {"image": p.image, "build": build, "gpus": p.gpus, "shm_size": p.shm_size,
                "env": dict(p.env or {}), "volumes": list(p.volumes), "workdir": self._workdir_setting(),
                "network": p.network, "user": p.user, "cpu": p.cpu, "memory": p.memory}

    def _spec_hash(self) -> str:
        return _short_hash(json.dumps(self._spec(), sort_keys=True, default=str))

    def _workdir_setting(self) -> str | None:
        return getattr(self.config.sync, "dest", None) or self.profile.workdir

    def _build_context(self) -> Path:
        ctx = Path(str((self.profile.build or {}).get("context") or "."))
        return ctx if ctx.is_absolute() else Path(self.config.root) / ctx

    def _image(self) -> Any:
        """The image to run: built from `build:` when given, else `image:` -- never pulled."""
        import docker.errors

        p = self.profile
        if p.build:
            return self._build_image()
        try:
            return self._client.images.get(p.image)
        except docker.errors.ImageNotFound:
            raise TargetError(
                f"image {p.image!r} (profile {p.name!r}) is not on the Docker engine at {self._engine}; "
                f"devloop never pulls implicitly",
                hint=f"pull it (`docker pull {p.image}`), build it (`docker build -t {p.image} .`), "
                     f"or give the profile `build: {{context: ., dockerfile: Dockerfile}}`",
            ) from None

    def _build_image(self) -> Any:
        import docker.errors

        build = self.profile.build or {}
        tag = self.profile.image or f"devloop/{_dns_name(self.project)}-{_dns_name(self.profile.name)}:dev"
        ctx = self._build_context()
        dockerfile = str(build.get("dockerfile") or "Dockerfile")
        if not (ctx / dockerfile).is_file():
            raise TargetError(f"profile {self.profile.name!r}: build dockerfile {ctx / dockerfile} does not exist",
                              hint="fix `build: {context, dockerfile}` (paths relative to the project root)")
        try:
            image, _logs = self._client.images.build(
                path=str(ctx), dockerfile=dockerfile, tag=tag, rm=True, forcerm=True, pull=False,
                buildargs={str(k): str(v) for k, v in dict(build.get("args") or {}).items()} or None,
            )
        except docker.errors.BuildError as exc:
            lines = [str(chunk.get("stream") or chunk.get("error") or "").strip() for chunk in exc.build_log]
            last = " | ".join([line for line in lines if line][-3:])
            raise TargetError(f"building {tag} from {ctx / dockerfile} failed: {last or exc.msg}",
                              hint="run `docker build` on that Dockerfile to see the whole log") from None
        return image

    def _create_kwargs(self, image: Any) -> dict[str, Any]:
        p = self.profile
        workdir = self._workdir_setting() or image.attrs.get("Config", {}).get("WorkingDir") or DEFAULT_WORKDIR
        kwargs: dict[str, Any] = {
            "image": image.id, "entrypoint": ["sleep", "infinity"], "command": [],
            "name": self.container_name(), "labels": {**self.labels(), LABEL_SPEC: self._spec_hash()},
            "working_dir": workdir, "environment": dict(p.env or {}), "init": True, "detach": True,
            # a session's idle stop ends the container through its init (SIGTERM to PID 1):
            # then nothing is left, unless the profile keeps it
            "auto_remove": not p.keep,
        }
        if p.network:
            kwargs["network_mode"] = p.network
        if p.user:
            kwargs["user"] = p.user
        if p.shm_size:
            kwargs["shm_size"] = int(parse_quantity(p.shm_size))
        if p.memory:
            kwargs["mem_limit"] = int(parse_quantity(p.memory))
        if p.cpu:
            kwargs["nano_cpus"] = int(parse_quantity(p.cpu) * 1e9)
        if p.volumes:
            kwargs["volumes"] = [self._volume(v) for v in p.volumes]
        requests = device_requests(p.gpus)
        if requests:
            kwargs["device_requests"] = requests
        return kwargs

    def _volume(self, spec: str) -> str:
        """"src:dst[:ro]" with a relative or ~ source resolved against the project root."""
        src, _, rest = str(spec).partition(":")
        if src.startswith((".", "~")):
            path = Path(os.path.expanduser(src))
            src = str(path if path.is_absolute() else (Path(self.config.root) / path).resolve())
        return f"{src}:{rest}"

    def _create_container(self) -> Any:
        import docker.errors

        image = self._image()
        kwargs = self._create_kwargs(image)
        try:
            container = self._client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # another devloop created it a moment ago: use that one
                found = self._find_container()
                if found is not None:
                    return found
            raise TargetError(f"creating the container for profile {self.profile.name!r} failed: "
                              f"{exc.explanation or exc}",
                              hint=f"check the profile's docker settings ({self.profile.source})") from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            self._remove(container)
            text = str(exc.explanation or exc)
            if _NO_GPU_RUNTIME in text:
                raise TargetError(
                    f"profile {self.profile.name!r} asks for gpus: {self.profile.gpus}, but the Docker "
                    f"engine at {self._engine} has no GPU runtime ({text})",
                    hint="install the NVIDIA Container Toolkit on the engine's host and restart dockerd "
                         "(`nvidia-ctk runtime configure --runtime=docker`), or remove `gpus:` from "
                         "the profile to run on CPU",
                ) from None
            raise TargetError(f"starting the container for profile {self.profile.name!r} failed: {text}",
                              hint=f"check the profile's docker settings ({self.profile.source})") from None
        container.reload()
        return container

    def _copy_bundle(self) -> str:
        """Put agent-<sha>.pyz in AGENT_DIR unless the container has it (HEAD on the archive)."""
        path = f"{AGENT_DIR}/{bundle_name()}"
        api = self._client.api
        head = api.head(api._url("/containers/{0}/archive", self._container.id), params={"path": path})
        if head.status_code == 200:
            return path
        data, _ = bundle()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            d = tarfile.TarInfo(AGENT_DIR.strip("/"))
            d.type, d.mode = tarfile.DIRTYPE, 0o1777
            tf.addfile(d)
            f = tarfile.TarInfo(path.lstrip("/"))
            f.size, f.mode = len(data), 0o644
            tf.addfile(f, io.BytesIO(data))
        self._container.put_archive("/", buf.getvalue())
        return path

    def _image_identity(self) -> tuple[str, str]:
        """(the image as configured, its repo digest or else its id)."""
        import docker.errors

        image_id = self._container.attrs.get("Image", "")
        ref = self.profile.image or (self._container.attrs.get("Config", {}).get("Image") or image_id)
        try:
            image = self._client.images.get(image_id)
            digests = image.attrs.get("RepoDigests") or []
        except docker.errors.ImageNotFound:
            digests = []
        return ref, (digests[0] if digests else image_id)

    # ------------------------------------------------------------------ processes
    def agent_argv(self, mode: str, *args: str) -> list[str]:
        if not self._bundle_path:
            raise TargetError("the docker target has not been started")
        flags = ["-u", "-S"] if mode == "connect" else ["-u"]  # stdlib only: starts sooner
        return [self.python, *flags, self._bundle_path, mode, *args]

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> Channel:
        if self._container is None:
            raise TargetError("the docker target has not been started")
        exec_id, sock = await asyncio.to_thread(self._exec_start, list(argv), dict(env or {}), cwd)
        channel = DockerExecChannel(self._client.api, self._container.id, exec_id, sock)
        self._channels.add(channel)
        return channel

    def _exec_start(self, argv: list[str], env: dict[str, str], cwd: str | None) -> tuple[str, Any]:
        import docker.errors

        env.setdefault("PYTHONUNBUFFERED", "1")
        api = self._client.api
        try:
            exec_id = api.exec_create(self._container.id, wrap_argv(argv), stdin=True, stdout=True,
                                      stderr=True, environment=env,
                                      workdir=cwd or (self._info.workdir if self._info else None))["Id"]
            return exec_id, api.exec_start(exec_id, socket=True)
        except docker.errors.NotFound:
            from devloop.core.targets.base import ConnectionLost

            raise ConnectionLost(f"the container of profile {self.profile.name!r} is gone",
                                 hint="devloop starts a new one on the next run") from None
        except docker.errors.APIError as exc:
            raise TargetError(f"docker exec in {self._container.name} failed: {exc.explanation or exc}",
                              hint="is the container still running? (`docker ps`)") from None

    # ------------------------------------------------------------------ health
    async def alive(self) -> bool:
        if self._container is None:
            return False
        return await asyncio.to_thread(self._alive_sync)

    def _alive_sync(self) -> bool:
        import docker.errors

        try:
            self._container.reload()
        except docker.errors.NotFound:
            return False
        except docker.errors.DockerException:
            return False
        return self._container.status == "running"

    def _read_oom_baseline(self, container: Any) -> None:
        kills = self._oom_kills(container)
        if self._container is container:
            self._oom_seen = max(self._oom_seen, kills)

    def _oom_kills(self, container: Any = None) -> int:
        """How many processes the kernel's OOM killer took in this container so far (cgroup v1/v2)."""
        files = ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"]
        try:
            out = (container or self._container).exec_run(["cat", *files], user="root").output.decode(errors="replace")
            counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("oom_kill ")]
            return max(counts, default=0)
        except Exception:  # noqa: BLE001 - best effort: only used to explain an exit
            return 0

    async def explain_exit(self, code: int | None) -> str | None:
        """Why a process in the container ended with `code`, when the container can tell: an
        exit 137 after a new OOM kill names the memory limit. None when there is nothing to add."""
        if code != 137 or self._container is None:
            return None
        kills = await asyncio.to_thread(self._oom_kills)
        if kills <= self._oom_seen:
            return None
        self._oom_seen = kills
        limit = self.profile.memory or "the engine's default"
        return (f"killed by the out-of-memory killer (exit 137): the container's memory limit is {limit} "
                f"(profile {self.profile.name!r}, `memory:`); raise it or use less memory")

    async def doctor_checks(self) -> list[tuple[str, bool, str]]:
        """Engine reachable, image present, container running, python found, GPUs seen."""
        return await asyncio.to_thread(self._doctor_sync)

    def _doctor_sync(self) -> list[tuple[str, bool, str]]:
        checks: list[tuple[str, bool, str]] = []
        try:
            client, engine = self._connect_engine()
        except TargetError as exc:
            return [("docker engine reachable", False, str(exc))]
        version = client.version()
        checks.append(("docker engine reachable", True, f"{engine}: Docker {version.get('Version')} "
                                                        f"(API {version.get('ApiVersion')})"))
        runtimes = sorted((client.info().get("Runtimes") or {}).keys())
        wants_gpu = self.profile.gpus not in (None, 0, "", ())
        has_nvidia = "nvidia" in runtimes
        checks.append(("GPU runtime", has_nvidia or not wants_gpu,
                       f"runtimes: {', '.join(runtimes)}" + ("" if has_nvidia else
                       " (no nvidia runtime: GPU containers need the NVIDIA Container Toolkit)")))
        if self.profile.image and not self.profile.build:
            import docker.errors
            try:
                client.images.get(self.profile.image)
                checks.append(("image present", True, self.profile.image))
            except docker.errors.ImageNotFound:
                checks.append(("image present", False, f"{self.profile.image} is not on the engine: "
                                                       f"docker pull {self.profile.image}"))
        if self._container is not None:
            py = self._container.exec_run([self.python, "-V"], user="root")
            text = py.output.decode(errors="replace").strip()
            checks.append(("python found", py.exit_code == 0,
                           text if py.exit_code == 0 else f"{self.python} does not run in the container: {text[:200]}"))
            smi = self._container.exec_run(["/bin/sh", "-c", "nvidia-smi -L 2>/dev/null"], user="root")
            gpus = [line for line in smi.output.decode(errors="replace").splitlines() if line.startswith("GPU ")]
            checks.append(("GPUs seen", bool(gpus) or not wants_gpu,
                           "; ".join(gpus) if gpus else "none (nvidia-smi not found or lists no GPU)"))
        return checks

    # ------------------------------------------------------------------ snapshot
    async def snapshot(self, run_id: str | None = None) -> Snapshot:
        """`docker commit` of the dev container, recorded in .devloop/snapshots.jsonl."""
        return await asyncio.to_thread(self._snapshot_sync, run_id)

    def _snapshot_sync(self, run_id: str | None) -> Snapshot:
        from devloop.core.snapshots import record_snapshot

        if self._container is None:
            raise TargetError("the docker target has not been started", hint="run `devloop snapshot` "
                              "with the profile's container running, or let it start one")
        now = datetime.now(timezone.utc)
        repo = f"devloop/{_dns_name(self.project)}-{_dns_name(self.profile.name)}"
        tag = now.strftime("snap-%Y%m%d-%H%M%S")
        image = self._client.images.get(self._container.attrs["Image"])
        cfg = image.attrs.get("Config") or {}
        # the base image's entrypoint/cmd, not devloop's `sleep infinity`: the engine reads
        # ENTRYPOINT [""] as "none" (and ENTRYPOINT resets CMD, so CMD comes after it)
        changes = [f"ENTRYPOINT {json.dumps(cfg.get('Entrypoint') or [''])}"]
        if cfg.get("Cmd"):
            changes.append(f"CMD {json.dumps(cfg['Cmd'])}")
        changes += [f'LABEL {k}=""' for k in self.labels()]
        if self._baseline is not None:
            self._baseline.join(30)
        # pause=False: a commit pauses the container with the cgroup freezer by default, and an
        # exec starting at that moment (a sync, a `devloop watch` next door) leaves runc stuck in
        # the frozen cgroup and the container paused for good (seen on cgroup v1)
        committed = self._container.commit(repository=repo, tag=tag, changes=changes, pause=False,
                                           message=f"devloop snapshot of profile {self.profile.name}")
        digests = committed.attrs.get("RepoDigests") or []
        snap = Snapshot(image=f"{repo}:{tag}", image_id=committed.id,
                        created=now.isoformat(timespec="seconds"),
                        details={"repo_digest": digests[0] if digests else "", "profile": self.profile.name,
                                 "container": self._container.name})
        record = record_snapshot(Path(self.config.root), snap, profile=self.profile.name, run_id=run_id)
        return Snapshot(image=snap.image, image_id=snap.image_id, created=snap.created,
                        details={**snap.details, **record})

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        try:
            if self.profile.snapshot_on_stop and self._container is not None:
                await self.snapshot()
        finally:  # a failed snapshot is reported, and still leaves nothing behind
            await asyncio.to_thread(self.stop_now)

    async def detach(self) -> None:
        """Leave the container (and the session kernel in it) running; close our sockets only."""
        await asyncio.to_thread(self.detach_now)

    def detach_now(self) -> None:
        _LIVE.discard(self)  # the atexit hook must not remove it either
        self._container = None
        for channel in list(self._channels):
            channel._close_socket()
        self._channels = weakref.WeakSet()
        self._info = None

    def stop_now(self) -> None:
        """Synchronous stop: safe from a signal handler path or atexit. Idempotent."""
        container, self._container = self._container, None
        _LIVE.discard(self)
        if container is None:
            return
        if self.profile.keep:
            for channel in list(self._channels):
                channel._kill_sync()  # the kept container must not collect stray kernels
                channel._close_socket()
        elif self._owned:
            self._remove(container)
        self._channels = weakref.WeakSet()
        self._info = None

    def _remove(self, container: Any) -> None:
        import docker.errors

        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


_LIVE: "weakref.WeakSet[DockerTarget]" = weakref.WeakSet()


@atexit.register
def _remove_left_behind() -> None:
    """A process that ends without stop() (Ctrl-C in the wrong place) still removes its containers."""
    for target in list(_LIVE):
        try:
            target.stop_now()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
