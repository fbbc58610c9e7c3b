"""The Kubernetes target: a labelled dev pod; sync and the agent run over exec streams.

`start()` creates a Pod for project + profile (`kube_pod.pod_manifest`: image, `nvidia.com/gpu`
limits, cpu/memory, node selector, tolerations, secrets, PVCs, service account) that sleeps
until devloop execs into it -- or, with `keep: true`, reuses the one a previous run left. While
it waits for Running it reads the pod's real status, so an unschedulable request (no node with
the GPUs asked for), an image the node cannot pull, an eviction or an OOM kill fail at once with
the scheduler's / kubelet's own words (`kube_pod.diagnose`), never as a hang.

Every process (kernel, sync receiver, setup, probes) is one exec stream under a small relay that
gives it a real stdin EOF and a session kill (`kube_exec`); the agent bundle is copied in by
content hash only when missing. `stop()` deletes the pod unless the profile keeps it; an atexit
hook deletes it if the process ends first (Ctrl-C). The kubernetes client is blocking: every
call runs in a thread.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import secrets
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from devloop.core.agent_bundle import bundle, bundle_name
from devloop.core.targets.base import Channel, ConnectionLost, Snapshot, Target, TargetError, TargetInfo
from devloop.core.targets.kube_exec import KubeExecChannel, relay_command
from devloop.core.targets.kube_pod import (
    ANNOTATION_SPEC, CONTAINER, DEFAULT_WORKDIR, GPU_RESOURCE, LABEL_PROFILE, LABEL_PROJECT, LABEL_ROOT,
    diagnose, dns_label, gpu_count, label_value, pod_manifest, progress_line, short_hash,
)

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Config, Profile

AGENT_DIR = "/tmp/devloop"
START_TIMEOUT_S = 600.0  # image pulls of multi-GB CUDA images take minutes
_PROBE = r"""
import json, os, sys
wd = os.path.expanduser(sys.argv[1])
os.makedirs(wd, exist_ok=True)
os.makedirs(sys.argv[2], exist_ok=True)
print(json.dumps({"python": sys.executable, "version": "%d.%d.%d" % sys.version_info[:3],
                  "workdir": os.path.realpath(wd), "bundle": os.path.exists(sys.argv[3]),
                  "host": os.uname()[1]}))
"""
_WRITE_FILE = r"""
import os, sys
data = sys.stdin.buffer.read()
tmp = "%s.%d.tmp" % (sys.argv[1], os.getpid())
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, sys.argv[1])
print(len(data))
"""
_OOM_COUNT = r"""
n = 0
for p in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
    try:
        for line in open(p):
            if line.startswith("oom_kill "):
                n = max(n, int(line.split()[1]))
    except (OSError, ValueError):
        pass
print(n)
"""

_LIVE: "weakref.WeakSet[KubernetesTarget]" = weakref.WeakSet()


def _api_exception_text(exc: Any) -> str:
    """The apiserver's own message from an ApiException (its Status JSON), else its reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body).strip()
        except (ValueError, AttributeError):
            return str(body).strip()[:300]
    return str(getattr(exc, "reason", exc)).strip()


class KubernetesTarget(Target):
    kind = "kubernetes"
    idle_stop_ends_environment = True  # the pod's keeper ends on SIGTERM: the pod Succeeds, its GPU is free

    def __init__(self, profile: "Profile", config: "Config") -> None:
        self.profile = profile
        self.config = config
        self.project = config.project.name
        self.root_hash = short_hash(str(Path(config.root).resolve()), 8)
        self.python = profile.python or "python3"
        self.workdir_spec = profile.workdir or DEFAULT_WORKDIR
        self.namespace = ""
        self.context = ""
        self.pod_name = ""
        self.pod_uid = ""
        self.lost_reason = ""  # why the previous pod went away (set when start() replaces it)
        self._api: Any = None  # CoreV1Api on the main ApiClient
        self._exec_config: Any = None  # the Configuration each exec stream's own ApiClient is made from
        self._lock = asyncio.Lock()
        self._info: TargetInfo | None = None
        self._owned = False
        self._stopped = False
        self._channels: "weakref.WeakSet[KubeExecChannel]" = weakref.WeakSet()
        self._oom_seen = 0
        self._log_responses: set[Any] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ clients
    def _connect(self) -> None:
        if self._api is not None:
            return
        from kubernetes import client, config as kconfig
        from kubernetes.config.config_exception import ConfigException

        p = self.profile
        files = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        have_file = any(os.path.exists(f) for f in files.split(os.pathsep) if f)
        try:
            if have_file:
                main = kconfig.new_client_from_config(config_file=files, context=p.context)
                contexts, active = kconfig.list_kube_config_contexts(config_file=files)
                chosen = next((c for c in contexts if c["name"] == p.context), None) if p.context else active
                self.context = (chosen or {}).get("name", "")
                ns = ((chosen or {}).get("context") or {}).get("namespace")
            elif os.environ.get("KUBERNETES_SERVICE_HOST") and not p.context:
                cfg = client.Configuration()
                kconfig.load_incluster_config(client_configuration=cfg)
                main = client.ApiClient(cfg)
                self.context = "in-cluster"
                try:
                    ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
                except OSError:
                    ns = None
            else:
                raise TargetError(
                    f"profile {p.name!r}: no kubeconfig found ({files})",
                    hint="set KUBECONFIG or write ~/.kube/config (kubectl config view shows what devloop reads)")
        except ConfigException as exc:
            raise TargetError(
                f"profile {p.name!r}: kubeconfig {files}: {exc}",
                hint="set `context:` to one of `kubectl config get-contexts`, or fix KUBECONFIG") from exc
        self.namespace = p.namespace or ns or "default"
        self._api = client.CoreV1Api(main)
        self._exec_config = main.configuration

    def _server(self) -> str:
        try:
            return self._api.api_client.configuration.host
        except AttributeError:
            return "?"

    def _api_error(self, exc: Any, doing: str) -> TargetError:
        """An ApiException (or a connection error) as one clear line with a fix."""
        status = getattr(exc, "status", None)
        text = _api_exception_text(exc)
        where = f"context {self.context or '?'}, namespace {self.namespace}"
        if status == 403:
            return TargetError(f"Kubernetes refused to {doing} ({where}): forbidden: {text}",
                               hint=f"ask an admin for a Role allowing pods and pods/exec in namespace "
                                    f"{self.namespace}, or set `namespace:` / `context:` to one you may use "
                                    f"(check: kubectl auth can-i create pods/exec -n {self.namespace})")
        if status == 401:
            return TargetError(f"Kubernetes did not accept the credentials of {where}: {text}",
                               hint="log in again (refresh the token in your kubeconfig)")
        if status == 404 and "namespaces" in text:
            return TargetError(f"cannot {doing}: namespace {self.namespace!r} does not exist ({text})",
                               hint="set `namespace:` in the profile to an existing namespace")
        if status in (None, 0) or (isinstance(status, int) and status >= 500):
            return ConnectionLost(f"cannot reach the Kubernetes API at {self._server()} to {doing}: {text or exc}",
                                  hint="check the cluster is up and the kubeconfig's server address")
        return TargetError(f"Kubernetes refused to {doing} ({where}): {text}")

    def _call(self, fn: Callable[..., Any], doing: str, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise self._api_error(exc, doing) from exc
        except (HTTPError, OSError) as exc:
            raise ConnectionLost(f"cannot reach the Kubernetes API at {self._server()} to {doing}: {exc}",
                                 hint="check the cluster is up and the kubeconfig's server address") from exc

    # ------------------------------------------------------------------ info
    @property
    def info(self) -> TargetInfo:
        if self._info is None:
            raise TargetError("the kubernetes target has not been started")
        return self._info

    def _say(self, text: str) -> None:
        """Progress from the worker thread, delivered on the event loop that called start()."""
        if self.progress is None or self._loop is None:
            return

        def deliver() -> None:
            try:
                if self.progress is not None:
                    self.progress(text)
            except Exception:  # noqa: BLE001 - a front end's problem must not stop the pod
                pass
        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed
            pass

    def _new_name(self) -> str:
        """A fresh name every time: a pod deleted a moment ago may still be winding down on the
        node under its old name, and an exec by that name could reach the dying container."""
        base = dns_label(f"devloop-{self.project[:20]}-{self.profile.name[:16]}")
        return f"{base}-{secrets.token_hex(3)}"

    def labels(self) -> dict[str, str]:
        return {LABEL_PROJECT: label_value(self.project), LABEL_PROFILE: label_value(self.profile.name),
                LABEL_ROOT: self.root_hash}

    # ------------------------------------------------------------------ start
    async def start(self) -> TargetInfo:
        async with self._lock:
            self._stopped = False
            self._loop = asyncio.get_running_loop()
            if self._info is not None and await asyncio.to_thread(self._pod_running):
                return self._info
            self._info = await asyncio.to_thread(self._start_pod)
            return self._info

    def _read_pod(self, name: str) -> Any:
        """The pod, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404 and "namespaces" not in _api_exception_text(exc):
                return None
            raise self._api_error(exc, f"read pod {name}") from exc
        except Exception as exc:  # noqa: BLE001 - urllib3 / socket errors
            raise ConnectionLost(f"cannot reach the Kubernetes API at {self._server()}: {exc}") from exc

    def _pod_running(self) -> bool:
        if not self.pod_name:
            return False
        pod = self._read_pod(self.pod_name)
        return (pod is not None and pod.metadata.uid == self.pod_uid and pod.metadata.deletion_timestamp is None
                and pod.status.phase == "Running")

    def _start_pod(self) -> TargetInfo:
        t0 = time.perf_counter()
        self._connect()
        previous = self.pod_name
        pod = None
        if previous:
            pod = self._read_pod(previous)
            if pod is not None and (pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running"):
                problem = diagnose(pod, (), self.profile)
                self.lost_reason = str(problem) if problem else f"pod {previous} is {pod.status.phase}"
                self._delete(previous, wait=True)
                pod = None
            elif pod is None:
                self.lost_reason = f"pod {previous} was deleted"
        name = previous if pod is not None else self._new_name()
        manifest = pod_manifest(self.profile, name=name, project=self.project, root_hash=self.root_hash,
                                workdir=self.workdir_spec if self.workdir_spec.startswith("/") else DEFAULT_WORKDIR)
        if pod is None and (self.profile.keep or self.adopt_existing):  # a live session may be in it
            pod = self._adopt_kept(manifest)
            if pod is not None:
                name = pod.metadata.name
        if pod is None:
            self._say(f"creating pod {name} in namespace {self.namespace}")
            pod = self._call(self._api.create_namespaced_pod, f"create pod {name}", self.namespace, manifest)
        self.pod_name, self.pod_uid = name, pod.metadata.uid
        self._owned = True
        _LIVE.add(self)
        try:
            pod = self._wait_running(pod)
            facts = self._prepare()
        except BaseException:
            if not self.profile.keep:
                self._delete(name, wait=False)
                self.pod_name = ""
            raise
        statuses = pod.status.container_statuses or []
        image_id = next((s.image_id for s in statuses if s.name == CONTAINER), "") or ""
        return TargetInfo(
            kind="kubernetes", id=name, workdir=facts["workdir"], python=facts["python"],
            image=self.profile.image or "", image_digest=image_id,
            gpus_requested=str(gpu_count(self.profile) or ""),
            details={"namespace": self.namespace, "context": self.context, "node": pod.spec.node_name,
                     "uid": pod.metadata.uid, "keep": bool(self.profile.keep),
                     "python_version": facts["version"], "bundle": self._bundle_path(),
                     "start_ms": round((time.perf_counter() - t0) * 1000, 1),
                     "previous_pod": self.lost_reason},
        )

    def _adopt_kept(self, manifest: dict) -> Any:
        """keep: the pod a previous run left (found by labels), if it runs the same spec; kept
        pods of an older spec of this profile are deleted."""
        selector = ",".join(f"{k}={v}" for k, v in self.labels().items())
        found = self._call(self._api.list_namespaced_pod, "list pods", self.namespace,
                           label_selector=selector).items or []
        wanted = manifest["metadata"]["annotations"][ANNOTATION_SPEC]
        adopted = None
        for pod in sorted(found, key=lambda p: p.metadata.creation_timestamp, reverse=True):
            same = (pod.metadata.annotations or {}).get(ANNOTATION_SPEC) == wanted
            healthy = pod.metadata.deletion_timestamp is None and pod.status.phase in ("Pending", "Running")
            if adopted is None and same and healthy:
                adopted = pod
                self._say(f"reusing kept pod {pod.metadata.name}")
            elif pod.metadata.deletion_timestamp is None:
                self._say(f"deleting kept pod {pod.metadata.name} "
                          f"({'the profile changed' if not same else pod.status.phase})")
                self._delete(pod.metadata.name, wait=False)
        return adopted

    def _wait_running(self, pod: Any) -> Any:
        name = pod.metadata.name
        deadline = time.monotonic() + START_TIMEOUT_S
        last_line, delay, last_events = "", 0.05, 0.0
        while True:
            if pod is None:
                raise ConnectionLost(f"pod {name} was deleted while it started",
                                     hint="something else deletes pods here; devloop retries")
            if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
                return pod
            events: list = []
            now = time.monotonic()
            if now - last_events > 2.0 and pod.status.phase == "Pending":
                last_events = now
                events = self._events(name)
            problem = diagnose(pod, events, self.profile)
            if problem is not None:
                raise problem
            line = progress_line(pod)
            if line != last_line:
                self._say(f"{name}: {line}")
                last_line = line
            if now > deadline:
                raise TargetError(f"pod {name} did not start in {START_TIMEOUT_S:.0f} s ({line})",
                                  hint=f"kubectl describe pod {name} -n {self.namespace} shows what it waits for")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            pod = self._read_pod(name)

    def _events(self, name: str) -> list:
        try:
            return list(self._api.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.name={name}").items or [])
        except Exception:  # noqa: BLE001 - events are a help, not a need (may be forbidden)
            return []

    def _bundle_path(self) -> str:
        return f"{AGENT_DIR}/{bundle_name()}"

    # ------------------------------------------------------------------ exec helpers (blocking)
    def _open_ws(self, command: list[str]) -> Any:
        """Open one exec stream. Each has its own short-lived ApiClient: `stream()` swaps the
        client's transport while it connects, and the websocket handshake has no timeout, so a
        shared client (behind a lock) let one hung handshake block every later exec -- the retry
        of a kernel start included. Now a hung open only holds its own thread."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        api_client = client.ApiClient(self._exec_config)
        try:
            return stream(client.CoreV1Api(api_client).connect_get_namespaced_pod_exec, self.pod_name,
                          self.namespace, command=command, container=CONTAINER, stdin=True, stdout=True,
                          stderr=True, tty=False, _preload_content=False, binary=True)
        except ApiException as exc:
            text = str(getattr(exc, "reason", "") or exc)
            if "403" in text.split("-+-+-")[0]:
                raise TargetError(
                    f"Kubernetes refused exec into pod {self.pod_name} (context {self.context}, namespace "
                    f"{self.namespace}): forbidden",
                    hint=f"devloop needs create on pods/exec in namespace {self.namespace} "
                         f"(check: kubectl auth can-i create pods/exec -n {self.namespace})") from exc
            raise ConnectionLost(f"cannot exec into pod {self.pod_name}: {text.splitlines()[0][:300]}",
                                 hint="the pod may have been deleted; devloop recreates it") from exc
        except OSError as exc:
            raise ConnectionLost(f"cannot reach the Kubernetes API at {self._server()}: {exc}") from exc
        finally:
            api_client.close()  # its HTTP pool; the websocket is the stream's own

    def _lost(self) -> ConnectionLost:
        return ConnectionLost(f"the exec stream into pod {self.pod_name} was cut (pod deleted or API unreachable)",
                              hint="devloop recreates the pod and resyncs by itself")

    def _run_once(self, argv: list[str], stdin: bytes | None = None, timeout: float = 60.0) -> tuple[int, bytes, str]:
        """Run a short process in the pod to completion (blocking): (exit code, stdout, stderr)."""
        async def go() -> tuple[int, bytes, str]:
            ch = await self.spawn(argv)
            if stdin:
                await ch.send(stdin)
            await ch.close_stdin()
            out = bytearray()
            while True:
                line = await ch.readline()
                if not line:
                    break
                out += line
            code = await ch.wait()
            return code, bytes(out), ch.stderr_tail() or ch.status_text

        return asyncio.run(asyncio.wait_for(go(), timeout))

    def _prepare(self) -> dict[str, Any]:
        """One probe: python runs, workdir exists, agent bundle present (copied when missing)."""
        path = self._bundle_path()
        try:
            code, out, err = self._run_once([self.python, "-c", _PROBE, self.workdir_spec, AGENT_DIR, path])
        except ConnectionLost as exc:
            raise TargetError(f"pod {self.pod_name}: cannot run {self.python!r} in image {self.profile.image!r}: {exc}",
                              hint="the image needs Python 3.8+; set `python:` in the profile to its path") from exc
        if code != 0 or not out.strip():
            raise TargetError(
                f"pod {self.pod_name}: {self.python!r} failed in image {self.profile.image!r} "
                f"(exit {code}): {err.strip().splitlines()[-1] if err.strip() else 'no message'}",
                hint="the image needs Python 3.8+; set `python:` in the profile to its path, and a "
                     "writable `workdir:`")
        facts = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        if tuple(int(x) for x in facts["version"].split(".")[:2]) < (3, 8):
            raise TargetError(f"pod {self.pod_name}: {facts['python']} is Python {facts['version']}; "
                              "the devloop agent needs 3.8+", hint="set `python:` in the profile to a newer interpreter")
        if not facts["bundle"]:
            data, _ = bundle()
            code, out, err = self._run_once([self.python, "-c", _WRITE_FILE, path], stdin=data)
            if code != 0 or out.strip() != str(len(data)).encode():
                raise TargetError(f"cannot copy the devloop agent into pod {self.pod_name}:{path}: {err.strip()}",
                                  hint=f"{AGENT_DIR} must be writable in the image")
        try:
            code, out, _ = self._run_once([self.python, "-c", _OOM_COUNT], timeout=10)
            self._oom_seen = int(out.strip() or 0) if code == 0 else 0
        except (TargetError, ValueError, asyncio.TimeoutError):
            self._oom_seen = 0
        return facts

    # ------------------------------------------------------------------ Target
    def agent_argv(self, mode: str, *args: str) -> list[str]:
        if self._info is None:
            raise TargetError("the kubernetes target has not been started")
        flags = ["-u", "-S"] if mode == "connect" else ["-u"]  # stdlib only: starts sooner
        return [self._info.python, *flags, self._bundle_path(), mode, *args]

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    cwd: str | None = None) -> Channel:
        if not self.pod_name:
            raise TargetError("the kubernetes target has not been started")
        full_env = {"PYTHONUNBUFFERED": "1", **dict(self.profile.env or {}), **dict(env or {})}
        workdir = cwd or (self._info.workdir if self._info is not None else "")
        command = relay_command(self.python, argv, full_env, workdir)
        ws = await asyncio.to_thread(self._open_ws, command)
        channel = KubeExecChannel(ws, asyncio.get_running_loop(), f"{argv[0]} in pod {self.pod_name}",
                                  self._lost, self._kill_fallback)
        self._channels.add(channel)
        return channel

    async def _kill_fallback(self, pid: int) -> None:
        ch = await self.spawn(["kill", "-KILL", "--", f"-{pid}"])
        await ch.close_stdin()
        await asyncio.wait_for(ch.wait(), 5)

    async def alive(self) -> bool:
        if not self.pod_name or self._api is None:
            return False
        return await asyncio.to_thread(self._pod_running)

    async def snapshot(self) -> Snapshot:
        pod = await asyncio.to_thread(self._read_pod, self.pod_name) if self.pod_name else None
        if pod is None:
            raise TargetError("the kubernetes target has no pod to snapshot", hint="start it first")
        status = next((s for s in pod.status.container_statuses or [] if s.name == CONTAINER), None)
        return Snapshot(image=self.profile.image or "", image_id=(status.image_id if status else "") or "",
                        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        details={"pod": self.pod_name, "namespace": self.namespace, "node": pod.spec.node_name})

    async def explain_exit(self, code: int | None) -> str | None:
        """Why a process in the pod ended with `code`, when the pod can tell: a SIGKILL after a new
        OOM kill in the pod's memory cgroup (or the container OOMKilled / evicted) names the limit."""
        if code not in (137, -9) or not self.pod_name:
            return None
        pod = await asyncio.to_thread(self._read_pod, self.pod_name)
        if pod is None:
            return f"pod {self.pod_name} was deleted"
        problem = diagnose(pod, (), self.profile)
        if problem is not None:
            return str(problem)
        try:
            rc, out, _ = await asyncio.to_thread(self._run_once, [self.python, "-c", _OOM_COUNT], None, 10)
            kills = int(out.strip() or 0) if rc == 0 else 0
        except (TargetError, ValueError, asyncio.TimeoutError):
            return None
        if kills <= self._oom_seen:
            return None
        self._oom_seen = kills
        return (f"OOMKilled: the out-of-memory killer stopped it inside pod {self.pod_name}: the pod's memory "
                f"limit is {self.profile.memory or 'the namespace default'} (profile {self.profile.name!r}, "
                "`memory:`); raise it or use less memory")

    async def detach(self) -> None:
        """Leave the pod (and the session kernel in it) running: our exec streams close (a
        relay ends with its stream; the kernel runs in its own session), nothing is deleted."""
        await self._close_streams()
        _LIVE.discard(self)
        self.pod_name, self._info, self._owned = "", None, False

    async def stop(self) -> None:
        await self._close_streams()
        await asyncio.to_thread(self._stop_sync)

    async def _close_streams(self) -> None:
        """End the log follower and every exec stream of ours (the pod is not touched)."""
        self._stopped = True
        for response in list(self._log_responses):
            _unblock(response)
        for channel in list(self._channels):
            try:
                await asyncio.wait_for(channel.kill(), 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - leaving / stopping goes on
                pass

    def _stop_sync(self) -> None:
        """Delete the pod unless kept. Safe from atexit. Idempotent."""
        _LIVE.discard(self)
        name, self.pod_name = self.pod_name, ""
        self._info = None
        if name and self._owned and not self.profile.keep and self._api is not None:
            self._delete(name, wait=False)
        self._owned = False

    def _delete(self, name: str, wait: bool) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._api.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise self._api_error(exc, f"delete pod {name}") from exc
            return
        except Exception:  # noqa: BLE001 - the API is gone: nothing more to do here
            return
        deadline = time.monotonic() + 60
        while wait and time.monotonic() < deadline and self._read_pod(name) is not None:
            time.sleep(0.1)

    # ------------------------------------------------------------------ logs
    async def follow_logs(self, on_text: Callable[[str], None]) -> None:
        """Stream the main container's log (what PID 1 and anything writing to it print) into
        `on_text` until stop(); follows the new pod after a reconnect. Run it as a task."""
        loop = asyncio.get_running_loop()
        followed: set[str] = set()
        while not self._stopped:
            name, uid = self.pod_name, self.pod_uid
            if not name or self._api is None:
                await asyncio.sleep(0.5)
                continue
            fresh = uid not in followed
            followed.add(uid)
            try:
                await asyncio.to_thread(self._follow_once, name, fresh,
                                        lambda text: loop.call_soon_threadsafe(on_text, text))
            except Exception:  # noqa: BLE001 - the pod went away: wait for the next one
                pass
            await asyncio.sleep(0.5)

    def _follow_once(self, name: str, from_start: bool, deliver: Callable[[str], None]) -> None:
        kwargs: dict[str, Any] = {"container": CONTAINER, "follow": True, "_preload_content": False}
        if not from_start:
            kwargs["since_seconds"] = 1
        response = self._api.read_namespaced_pod_log(name, self.namespace, **kwargs)
        self._log_responses.add(response)
        pending = b""
        try:
            for chunk in response.stream(65536):
                if self._stopped:
                    break
                pending += chunk
                text, pending = _utf8_split(pending)
                if text:
                    deliver(text)
        finally:
            self._log_responses.discard(response)
            try:
                response.release_conn()
            except Exception:  # noqa: BLE001
                pass
        if pending:
            deliver(pending.decode("utf-8", "replace"))

    # ------------------------------------------------------------------ doctor
    async def doctor_checks(self) -> list[tuple[str, bool, str]]:
        """(check, ok, detail) for `devloop doctor`: API reachable, namespace allowed, GPU capacity."""
        return await asyncio.to_thread(self._doctor_sync)

    def _doctor_sync(self) -> list[tuple[str, bool, str]]:
        from kubernetes import client

        checks: list[tuple[str, bool, str]] = []
        try:
            self._connect()
            version = self._call(client.VersionApi(self._api.api_client).get_code, "read the server version")
        except TargetError as exc:
            return [("Kubernetes API reachable", False, str(exc))]
        checks.append(("Kubernetes API reachable", True,
                       f"{self._server()} (context {self.context}, Kubernetes {version.git_version})"))
        authz = client.AuthorizationV1Api(self._api.api_client)
        denied = []
        for resource, subresource, verb in (("pods", "", "create"), ("pods", "exec", "create"),
                                            ("pods", "", "delete"), ("pods", "log", "get")):
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": {"namespace": self.namespace, "verb": verb,
                                                      "resource": resource, "subresource": subresource}}}
            try:
                answer = self._call(authz.create_self_subject_access_review, "review access", review)
            except TargetError as exc:
                denied.append(f"{verb} {resource}{'/' + subresource if subresource else ''} ({exc.message})")
                continue
            if not answer.status.allowed:
                denied.append(f"{verb} {resource}{'/' + subresource if subresource else ''}")
        checks.append((f"namespace {self.namespace} allowed", not denied,
                       "may create, exec into and delete pods" if not denied else
                       "not allowed: " + ", ".join(denied) + " -- fix: ask for a Role with pods, pods/exec, "
                       "pods/log, or set namespace:/context: in the profile"))
        wanted = gpu_count(self.profile) if self.profile.gpus not in ("all",) else 1
        try:
            nodes = self._call(self._api.list_node, "list nodes").items or []
        except TargetError as exc:
            checks.append(("GPU capacity of nodes", wanted == 0, f"cannot list nodes: {exc.message}"))
            return checks
        per_node = {n.metadata.name: int((n.status.allocatable or {}).get(GPU_RESOURCE, "0") or 0) for n in nodes}
        best = max(per_node.values(), default=0)
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(per_node.items())) or "no nodes"
        ok = best >= wanted
        checks.append(("GPU capacity of nodes", ok,
                       f"allocatable {GPU_RESOURCE} per node: {detail}; the profile asks for {wanted}"
                       + ("" if ok else " -- fix: point context:/node_selector: at a GPU node pool, or lower gpus:")))
        return checks


def _unblock(response: Any) -> None:
    """End a log stream another thread is blocked reading: shut its socket down (closing the
    response from here would wait on the TLS object that reader holds)."""
    import socket

    sock = getattr(getattr(response, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _utf8_split(data: bytes) -> tuple[str, bytes]:
    """Decode what is complete; keep a trailing partial multi-byte character for the next chunk."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8"), data[cut:]
        except UnicodeDecodeError as exc:
            if exc.start < cut - 4 or exc.reason != "unexpected end of data":
                return data.decode("utf-8", "replace"), b""
    return data.decode("utf-8", "replace"), b""


@atexit.register
def _delete_left_behind() -> None:
    """A process that ends without stop() (Ctrl-C in the wrong place) still deletes its pods."""
    for target in list(_LIVE):
        try:
            target._stop_sync()
        except Exception:  # noqa: BLE001
            pass
