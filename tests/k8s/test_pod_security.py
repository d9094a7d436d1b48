"""Every pod trainops renders or ships meets the restricted Pod Security Standard, as checkov (a
widely used IaC scanner, installed by `make checkov`) checks it, with the waivers below."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.settings import KubernetesPolicy
from mcp_servers.kubernetes.manifests import RenderContext, render
from mcp_servers.kubernetes.schemas import TrainingJobSpec
from tests.k8s.manifests import (
    BASE,
    CLUSTER_SCOPED,
    KUSTOMIZE,
    NO_KUSTOMIZE,
    OVERLAYS,
    base_resources,
    build,
    find,
    kustomization,
    ray_pods,
)
from tests.support import REPO

CHECKOV = shutil.which("checkov", path=str(REPO / ".venv" / "tools" / "checkov" / "bin"))
# What is waived, and why; every other failed check fails the test.
WAIVED = {
    "CKV_K8S_43": "images are pinned by version tag, not digest: releases tag immutable images",
    "CKV_K8S_15": "IfNotPresent with immutable version tags; Always would pull at every restart",
    "CKV_K8S_35": "secrets as env vars: what jobs and MLflow use (HF, AWS SDK, libpq) reads env",
    "CKV_K8S_38": "Prometheus and the Ray head mount their tokens: Prometheus discovers the "
    "training pods through the API, the Ray autoscaler scales its workers through it",
}
# Pods, not Deployments: the rendered training pods, and the Ray pods as KubeRay makes them, whose
# head holds KubeRay's autoscaler container, which has no probes (the Ray containers have theirs).
WAIVED_FOR_TRAINING_PODS = {
    "CKV_K8S_8": "a training process serves no endpoint to probe; its supervisor watches it",
    "CKV_K8S_9": "nothing routes traffic to a training pod, so readiness means nothing there",
}
CONTEXT = RenderContext(KubernetesPolicy(), mlflow_tracking_uri="http://mlflow.trainops:5000")


def rendered_pods() -> list[dict]:
    """The pods the rendered jobs make: a Job as it is; a PyTorchJob's replica templates as the
    Pods the Training Operator creates (checkov reads no CRDs)."""
    out = []
    for nodes, gpus in [(1, 0), (1, 8), (2, 0), (4, 8)]:
        spec = TrainingJobSpec(
            model="resnet18",
            dataset="cifar10",
            nodes=nodes,
            gpus_per_node=gpus,
            batch_size=256,
            secret_env={"HF_TOKEN": {"secret": "hf", "key": "token"}},
        )
        body = render(spec, f"resnet18-cifar10-{nodes}{gpus}00", "trainops", CONTEXT).body
        if body["kind"] == "Job":
            out.append(body)
            continue
        for kind, replica in body["spec"]["pytorchReplicaSpecs"].items():
            template = replica["template"]
            metadata = {**template["metadata"], "name": f"{body['metadata']['name']}-{kind}"}
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {**metadata, "namespace": "trainops"},
                    "spec": template["spec"],
                }
            )
    return out


def shipped() -> list[dict]:
    """k8s/base in the namespace kustomize gives it, and each overlay as kustomize builds it,
    with the Pods KubeRay makes of its RayClusters (checkov reads no CRDs)."""
    documents = [copy.deepcopy(d) for d in base_resources()]
    for document in documents:
        if document["kind"] not in CLUSTER_SCOPED:
            document["metadata"]["namespace"] = kustomization(BASE)["namespace"]
    for overlay in OVERLAYS:
        built = build(overlay)
        documents += built
        for cluster in (d for d in built if d["kind"] == "RayCluster"):
            documents += ray_pods(cluster)
    return documents


def failed_checks(documents: list[dict], folder: Path) -> list[tuple[str, str, str]]:
    assert CHECKOV is not None
    for i, document in enumerate(documents):
        (folder / f"{i:03d}.yaml").write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [CHECKOV, "-d", str(folder), "--framework", "kubernetes", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return [
        (check["check_id"], check["resource"], check["check_name"])
        for report in reports
        for check in report["results"]["failed_checks"]
    ]


@pytest.mark.skipif(CHECKOV is None, reason="checkov is not installed (make checkov installs it)")
@pytest.mark.skipif(KUSTOMIZE is None, reason=NO_KUSTOMIZE)
def test_every_rendered_and_shipped_pod_meets_the_restricted_standard(tmp_path: Path) -> None:
    documents = rendered_pods() + shipped()
    assert sum(d["kind"] in ("Job", "Pod", "Deployment") for d in documents) >= 7
    failed = [
        (check, resource, name)
        for check, resource, name in failed_checks(documents, tmp_path)
        if check not in WAIVED
        and not (check in WAIVED_FOR_TRAINING_PODS and resource.startswith("Pod."))
    ]
    assert failed == [], "\n".join(" ".join(f) for f in failed)


def test_the_namespace_enforces_the_restricted_standard() -> None:
    namespace = find(base_resources(), "Namespace", kustomization(BASE)["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_rendered_training_container_is_locked_down_and_writes_only_to_volumes() -> None:
    pod = rendered_pods()[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsNonRoot"]
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/checkpoints", "/data", "/dev/shm"} <= mounted
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == "/tmp"
    assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]
