"""Targets: where code runs. `create_target` maps a profile's kind to its class (imported lazily,
so `devloop run` on the local profile never imports the docker, kubernetes or paramiko SDKs)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from devloop.core.targets.base import Target, TargetError

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.config import Config, Profile

KINDS = {
    "local": "devloop.core.targets.local:LocalTarget",
    "docker": "devloop.core.targets.docker:DockerTarget",
    "ssh": "devloop.core.targets.ssh:SshTarget",
    "kubernetes": "devloop.core.targets.kubernetes:KubernetesTarget",
}


def create_target(profile: "Profile", config: "Config") -> Target:
    spec = KINDS.get(profile.kind)
    if profile.kind == "ssh" and getattr(profile, "docker", None):  # a container on the SSH host
        spec = "devloop.core.targets.ssh_docker:SshDockerTarget"
    if spec is None:
        raise TargetError(
            f"profile {profile.name!r} has kind {profile.kind!r}, which devloop does not know",
            hint=f"use one of: {', '.join(KINDS)}",
        )
    module_name, cls_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("devloop"):
            raise TargetError(f"the {profile.kind} target is not available in this devloop build") from exc
        raise TargetError(
            f"the {profile.kind} target needs the Python package {exc.name!r}",
            hint="pip install devloop (it depends on docker, kubernetes and paramiko)",
        ) from exc
    return getattr(module, cls_name)(profile, config)
