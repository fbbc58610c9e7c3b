"""A real one-node Kubernetes 1.20 cluster for the kubernetes target tests (tests/infra/kube-up.sh):
etcd, kube-apiserver, kube-scheduler and a kubelet running pods on the private test Docker engine.

`DEVLOOP_TEST_KUBECONFIG` names a running one (tests/run.sh starts it), else this file runs the
script itself (about 30 s; the first time on a machine also builds Kubernetes, ~7 min, cached).
`DEVLOOP_SKIP_KUBE=1` skips every Kubernetes test, loudly. Tests use the `default` namespace and
unique pod names: the cluster has no controller-manager, so deleted namespaces never go away.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
KUBE_UP = REPO / "tests" / "infra" / "kube-up.sh"
IMAGE = "devloop-test:hostpy"
NOACCESS_CONTEXT = "devloop-noaccess"  # a user kube-up.sh gives no RBAC rights at all


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    if os.environ.get("DEVLOOP_SKIP_KUBE") == "1":
        msg = "DEVLOOP_SKIP_KUBE=1: every Kubernetes test is SKIPPED (no cluster was used)"
        print(f"\n*** {msg} ***", file=sys.stderr)
        pytest.skip(msg)
    path = os.environ.get("DEVLOOP_TEST_KUBECONFIG")
    if not path or not Path(path).is_file():
        state = os.environ.get("DEVLOOP_TEST_STATE", "/tmp/devloop-test") + "/kube"
        res = subprocess.run(["bash", str(KUBE_UP), state], capture_output=True, text=True, timeout=1500)
        if res.returncode != 0:
            pytest.fail(f"tests/infra/kube-up.sh failed ({res.returncode}); set DEVLOOP_SKIP_KUBE=1 to skip "
                        f"the Kubernetes tests on purpose:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        path = res.stdout.strip().splitlines()[-1].split("=", 1)[1]
    os.environ["KUBECONFIG"] = path  # the target (and the CLI the tests start) read it
    return path


@pytest.fixture(scope="session")
def core_api(kubeconfig: str):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig, context="devloop"))


def kube_profile_yaml(**extra: object) -> str:
    # network: host -- the test node has no pod network (no CNI, dockerd without a bridge); a pod
    # without an IP is killed by the kubelet at its next sync ("sandbox has no IP address")
    lines = ["kind: kubernetes", f"image: {IMAGE}", "namespace: default", "network: host"]
    for key, value in extra.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def kube_project(tmp_path: Path, kubeconfig: str) -> Path:
    """A project with a `kube` profile (the test image on the test cluster); project name unique per test."""
    (tmp_path / "devloop.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "kt-{secrets.token_hex(4)}"
        """))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "kube.yaml").write_text(kube_profile_yaml())
    return tmp_path


@pytest.fixture
def make_target(kube_project: Path):
    """KubernetesTarget factory for a profile with the given fields; every target made is stopped."""
    from devloop.core.config import load_config
    from devloop.core.targets.kubernetes import KubernetesTarget

    made: list = []

    def make(**fields):
        config = load_config(kube_project)
        profile = dataclasses.replace(config.profile("kube"), **fields)
        target = KubernetesTarget(profile, config)
        made.append(target)
        return target

    yield make
    for target in made:  # a backstop: tests stop their targets themselves
        try:
            if target.profile.keep and target.pod_name:
                target._delete(target.pod_name, wait=False)
            target._stop_sync()
        except Exception:  # noqa: BLE001 - cleanup of a test that already failed
            pass


def pods_of(core_api, project_label: str) -> list:
    """Pods of a project that are not on their way out."""
    items = core_api.list_namespaced_pod("default", label_selector=f"devloop.project={project_label}").items
    return [p for p in items if p.metadata.deletion_timestamp is None]
