"""What `devloop promote --target pytorchjob` / `--target argo` writes for a multi-node stage, checked by
the real API server: the PyTorchJob CustomResourceDefinition (its vendored openAPIV3Schema,
tests/schemas/) is installed into the test cluster and the generated resources are created with
server-side dry run (nothing is stored). The test API server is built with reflect2 1.0.2
(tests/infra/build-kube.sh): the vendored 1.0.1 crashed it on any custom resource."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.kube

HERE = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"


@pytest.fixture(scope="module")
def pytorchjob_crd(kubeconfig: str):
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(config_file=kubeconfig, context="devloop")
    ext = client.ApiextensionsV1Api(api_client)
    schema = json.loads((HERE / "schemas" / "kubeflow.org_pytorchjobs.v1.openapi.json").read_text())
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"kind": "PyTorchJob", "listKind": "PyTorchJobList", "plural": PLURAL,
                           "singular": "pytorchjob"},
                 "versions": [{"name": VERSION, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}, "subresources": {"status": {}}}]},
    }
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:  # already installed by an earlier run on this cluster
            raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        if any(c.type == "Established" and c.status == "True" for c in (got.status.conditions or [])):
            return client.CustomObjectsApi(api_client)
        time.sleep(0.5)
    pytest.fail("the PyTorchJob CRD did not become Established within 60 s")


def dry_run(objects, body: dict):
    return objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body, dry_run="All")


def test_the_promoted_pytorchjob_is_accepted_by_the_api_server(pytorchjob_crd) -> None:
    body = yaml.safe_load((HERE / "golden" / "multinode_2x8.pytorchjob.yaml").read_text())
    made = dry_run(pytorchjob_crd, body)
    assert made["kind"] == "PyTorchJob" and made["metadata"]["name"].startswith("mnist-train-")
    # nothing the generator wrote was pruned by the structural schema
    assert made["spec"]["pytorchReplicaSpecs"] == body["spec"]["pytorchReplicaSpecs"]
    assert made["metadata"]["labels"]["devloop.dev/run-id"] == body["metadata"]["labels"]["devloop.dev/run-id"]


def test_the_pytorchjob_inside_the_argo_resource_step_is_accepted_too(pytorchjob_crd) -> None:
    workflow = yaml.safe_load((HERE / "golden" / "multinode_2x8.argo.yaml").read_text())
    manifests = [t["resource"]["manifest"] for t in workflow["spec"]["templates"] if "resource" in t]
    assert len(manifests) == 1
    body = yaml.safe_load(manifests[0])
    assert body["kind"] == "PyTorchJob"
    dry_run(pytorchjob_crd, body)


def test_a_broken_pytorchjob_is_refused_by_its_schema(pytorchjob_crd) -> None:
    """The check is real: the same server refuses a replica count that is not an integer."""
    from kubernetes.client.exceptions import ApiException

    body = yaml.safe_load((HERE / "golden" / "multinode_2x8.pytorchjob.yaml").read_text())
    body["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "two"
    with pytest.raises(ApiException) as err:
        dry_run(pytorchjob_crd, body)
    assert err.value.status == 422 and "replicas" in err.value.body
