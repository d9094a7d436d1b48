"""k8s/components/raycluster: the standing Ray cluster of the gpu and prod overlays. Its
RayCluster validates against KubeRay's CRD schema (unknown fields rejected); the head runs no
trials; the GPU workers scale from zero, within the overlay's quota, one GPU each on the tainted
GPU nodes; every Ray pod runs the training image as the jobs' pods do (restricted Pod Security,
MLflow in the cluster); and the network policies let the Ray pods reach each other, MLflow and
KubeRay's operator the dashboard, and nothing else in."""

from __future__ import annotations

import copy
import re
import urllib.parse
from pathlib import Path

import jsonschema
import pytest

from common.quantities import parse_bytes, parse_cpu
from common.settings import ClusterSettings, KubernetesPolicy
from tests.k8s.manifests import (
    K8S,
    KUSTOMIZE,
    NO_KUSTOMIZE,
    OVERLAYS,
    build,
    crd_validator,
    find,
    ray_pods,
    validate,
)

pytestmark = pytest.mark.skipif(KUSTOMIZE is None, reason=NO_KUSTOMIZE)

NAME = "trainops-ray"
WITH_RAY = [p for p in OVERLAYS if p.name in ("gpu", "prod")]
TRAINER_LABELS = {
    "app.kubernetes.io/managed-by": "trainops",
    "app.kubernetes.io/part-of": "trainops",
    "app.kubernetes.io/component": "trainer",
}
DOCKERFILE = K8S / "image" / "Dockerfile"
OPERATOR = ({"app.kubernetes.io/name": "kuberay-operator"}, "ray-system")
with_ray = pytest.mark.parametrize("overlay", WITH_RAY, ids=lambda p: p.name)


def cluster_of(overlay: Path) -> dict:
    return find(build(overlay), "RayCluster", NAME)


def gpu_group(cluster: dict) -> dict:
    return next(g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")


def containers(pod: dict) -> list[dict]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def test_the_gpu_and_prod_overlays_keep_the_ray_cluster_and_dev_does_not() -> None:
    assert {p.name for p in WITH_RAY} == {"gpu", "prod"}
    for overlay in OVERLAYS:
        clusters = [d["metadata"]["name"] for d in build(overlay) if d["kind"] == "RayCluster"]
        assert clusters == ([NAME] if overlay in WITH_RAY else []), overlay.name


@with_ray
def test_the_ray_cluster_validates_against_the_kuberay_crd_schema(overlay: Path) -> None:
    cluster = cluster_of(overlay)
    assert cluster["metadata"]["namespace"] == "trainops"
    validate(cluster)
    validator = crd_validator(cluster["apiVersion"], cluster["kind"])
    misspelt = copy.deepcopy(cluster)
    gpu_group(misspelt)["maxReplica"] = gpu_group(misspelt).pop("maxReplicas")
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        validator.validate(misspelt)
    unquoted = copy.deepcopy(cluster)
    unquoted["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        validator.validate(unquoted)


@with_ray
def test_the_head_serves_the_dashboard_and_takes_no_trials(overlay: Path) -> None:
    head = cluster_of(overlay)["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert "num-gpus" not in head["rayStartParams"]
    ray = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in str(ray["resources"])
    # The names KubeRay's head service and RayJob submission look ports up by.
    ports = {p["name"]: p["containerPort"] for p in ray["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}


@with_ray
def test_the_gpu_workers_scale_from_zero_within_the_overlays_quota(overlay: Path) -> None:
    documents = build(overlay)
    cluster = find(documents, "RayCluster", NAME)
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    group = gpu_group(cluster)
    assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
    # The autoscaler owns replicas: a server-side apply that set it would undo its scaling.
    assert "replicas" not in group
    quota = find(documents, "ResourceQuota", "trainops-compute")["spec"]["hard"]
    worker = group["template"]["spec"]["containers"][0]["resources"]["requests"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    autoscaler = cluster["spec"]["autoscalerOptions"]["resources"]["requests"]
    most = group["maxReplicas"]
    assert most * int(worker["nvidia.com/gpu"]) <= int(quota["requests.nvidia.com/gpu"])
    cpus = [head["resources"]["requests"]["cpu"], autoscaler["cpu"], *[worker["cpu"]] * most]
    assert sum(map(parse_cpu, cpus)) <= parse_cpu(quota["requests.cpu"])
    memory = [head["resources"]["requests"]["memory"], autoscaler["memory"]]
    memory += [worker["memory"]] * most
    assert sum(map(parse_bytes, memory)) <= parse_bytes(quota["requests.memory"])


@with_ray
def test_each_gpu_worker_holds_one_gpu_on_a_gpu_node(overlay: Path) -> None:
    spec = gpu_group(cluster_of(overlay))["template"]["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["requests"] == resources["limits"]  # Guaranteed, as the jobs' pods are
    for toleration in KubernetesPolicy().gpu_tolerations:
        assert toleration in spec["tolerations"]


@with_ray
def test_the_ray_pods_run_the_training_image_and_log_to_the_in_cluster_mlflow(
    overlay: Path,
) -> None:
    cluster = cluster_of(overlay)
    policy, mlflow = KubernetesPolicy(), ClusterSettings().job_mlflow_tracking_uri
    pinned = re.search(r'"ray\[[\w,]+\]==([\d.]+)"', DOCKERFILE.read_text())
    assert pinned and cluster["spec"]["rayVersion"] == pinned.group(1)
    for pod in ray_pods(cluster):
        for container in containers(pod):
            assert container["image"] == policy.default_image, container["name"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["HOME"] == "/tmp", container["name"]
            if container["name"] != "autoscaler":
                assert env["MLFLOW_TRACKING_URI"] == mlflow, container["name"]
        claims = {
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims == {policy.checkpoint_claim, policy.dataset_claim}


@with_ray
def test_every_ray_container_meets_the_restricted_standard(overlay: Path) -> None:
    """Those KubeRay adds too: the autoscaler from autoscalerOptions, wait-gcs-ready from the
    Ray container's own securityContext."""
    pods = ray_pods(cluster_of(overlay))
    image_user = int(re.findall(r"^USER (\d+)$", DOCKERFILE.read_text(), re.M)[-1])
    names = {c["name"] for pod in pods for c in containers(pod)}
    assert names == {"ray-head", "autoscaler", "ray-worker", "wait-gcs-ready"}
    for pod in pods:
        spec = pod["spec"]
        assert {k: pod["metadata"]["labels"][k] for k in TRAINER_LABELS} == TRAINER_LABELS
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == image_user
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["runAsNonRoot"] is True, container["name"]
            assert context["seccompProfile"]["type"] == "RuntimeDefault", container["name"]
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert {"cpu", "memory"} <= set(resources["limits"]), container["name"]
    head, worker = pods
    # The head's token is the autoscaler's (KubeRay's ServiceAccount); workers have none.
    assert head["spec"]["serviceAccountName"] == NAME
    assert worker["spec"]["serviceAccountName"] == KubernetesPolicy().service_account
    assert worker["spec"]["automountServiceAccountToken"] is False


def admits(policies: list[dict], target: dict, source: tuple[dict, str], port: int) -> bool:
    """Whether the NetworkPolicies of namespace trainops let SOURCE (labels, namespace) reach
    TARGET's port, for the kinds of policy k8s/ has: pod and namespace selectors by labels."""

    def matches(selector: dict, labels: dict) -> bool:
        assert set(selector) <= {"matchLabels"}, selector
        return selector.get("matchLabels", {}).items() <= labels.items()

    def peer(rule: dict) -> bool:
        labels, namespace = source
        if "from" not in rule:
            return True
        for p in rule["from"]:
            assert p.get("namespaceSelector", {}) == {}, p  # every namespace, or none but ours
            in_reach = "namespaceSelector" in p or namespace == "trainops"
            if in_reach and matches(p.get("podSelector", {}), labels):
                return True
        return False

    def opens(rule: dict) -> bool:
        ports = rule.get("ports")
        return ports is None or any(p["port"] <= port <= p.get("endPort", p["port"]) for p in ports)

    selecting = [p["spec"] for p in policies if matches(p["spec"]["podSelector"], target["labels"])]
    assert all(s["policyTypes"] == ["Ingress"] for s in selecting)
    if not selecting:
        return True
    return any(peer(r) and opens(r) for s in selecting for r in s.get("ingress", []))


@with_ray
def test_the_policies_let_ray_pods_reach_each_other_and_mlflow_and_kuberay_the_dashboard(
    overlay: Path,
) -> None:
    documents = build(overlay)
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    head, worker = (p["metadata"] for p in ray_pods(find(documents, "RayCluster", NAME)))
    mlflow = find(documents, "Deployment", "mlflow")["spec"]["template"]["metadata"]
    mlflow_port = urllib.parse.urlsplit(ClusterSettings().job_mlflow_tracking_uri).port
    # GCS, client, dashboard, object manager, node manager, worker processes (10002-19999).
    ray_ports = [6379, 10001, 8265, 8076, 12345, 10002, 19999]
    for source, target in [(worker, head), (head, worker), (worker, worker)]:
        for port in ray_ports:
            assert admits(policies, target, (source["labels"], "trainops"), port), port
    for source in (head, worker):
        assert mlflow_port and admits(policies, mlflow, (source["labels"], "trainops"), mlflow_port)
    rayjob_submitter = ({"ray.io/originated-from-crd": "RayJob"}, "trainops")
    for source in (OPERATOR, rayjob_submitter):
        assert admits(policies, head, source, 8265)
        assert not admits(policies, head, source, 6379)
        assert not admits(policies, worker, source, 8265)
    # Nothing else gets in: another pod of the namespace, a pod of another, a trainer elsewhere.
    for stranger in [({}, "trainops"), ({}, "default"), (TRAINER_LABELS, "default")]:
        for port in ray_ports:
            assert not admits(policies, head, stranger, port), (stranger, port)
            assert not admits(policies, worker, stranger, port), (stranger, port)
