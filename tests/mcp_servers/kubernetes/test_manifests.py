"""Rendered manifests validate against the real schemas: Kubernetes' OpenAPI and the CRDs."""

from __future__ import annotations

import functools

import jsonschema
import kubernetes_validate
import pytest
import yaml

from common.settings import KubernetesPolicy
from mcp_servers.kubernetes.manifests import RenderContext, render
from mcp_servers.kubernetes.schemas import TrainingJobSpec
from tests.kube_api.fixture import crd_text

CRD_FILES = {
    "PyTorchJob": "kubeflow.org_pytorchjobs.yaml",
    "TrainJob": "trainer.kubeflow.org_trainjobs.yaml",
}
KUBERNETES_VERSION = "1.33"


@functools.cache
def crd_schema(kind: str) -> dict:
    document = yaml.safe_load(crd_text(CRD_FILES[kind]))
    return strict(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def strict(schema: object) -> object:
    """The API server prunes fields a structural schema does not name; a rendered manifest
    must not depend on that, so here an unknown field is an error."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate(body: dict) -> None:
    if body["kind"] == "Job":
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
        return
    jsonschema.validate(body, crd_schema(body["kind"]))


CONTEXT = RenderContext(KubernetesPolicy(), mlflow_tracking_uri="http://mlflow.trainops:5000")


@pytest.mark.parametrize("nodes", [1, 2, 8])
@pytest.mark.parametrize("gpus", [0, 8])
@pytest.mark.parametrize("kind", ["auto", "TrainJob"])
def test_rendered_manifest_validates_against_the_real_schema(
    nodes: int, gpus: int, kind: str
) -> None:
    spec = TrainingJobSpec(
        model="resnet18",
        dataset="cifar10",
        nodes=nodes,
        gpus_per_node=gpus,
        kind=kind,
        extra_args=["--precision", "bf16"],
        env={"NCCL_DEBUG": "INFO"},
        secret_env={"HF_TOKEN": {"secret": "hf", "key": "token"}},
    )
    manifest = render(spec, "resnet18-cifar10-0a1b", "trainops", CONTEXT)
    expected_kind = "TrainJob" if kind == "TrainJob" else ("Job" if nodes == 1 else "PyTorchJob")
    assert manifest.kind == expected_kind
    validate(manifest.body)
    assert yaml.safe_load(manifest.yaml) == manifest.body  # what is shown is what is applied


@pytest.mark.parametrize("kind", ["PyTorchJob", "TrainJob"])
def test_a_misspelt_field_fails_the_crd_check(kind: str) -> None:
    spec = TrainingJobSpec(model="cnn", dataset="digits", nodes=2, kind=kind)
    body = render(spec, "cnn-digits-0a1b", "trainops", CONTEXT).body
    body["spec"]["runPolicyy"] = {}
    with pytest.raises(jsonschema.ValidationError, match="runPolicyy"):
        validate(body)


def pod_template(body: dict) -> dict:
    if body["kind"] == "Job":
        return body["spec"]["template"]
    return body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]


def test_gpu_pods_request_what_they_limit_and_run_torchrun_sized_to_the_spec() -> None:
    spec = TrainingJobSpec(model="cnn", dataset="mnist", nodes=2, gpus_per_node=4, epochs=5)
    body = render(spec, "cnn-mnist-0001", "trainops", CONTEXT).body
    assert body["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert body["spec"]["nprocPerNode"] == "4"
    pod = pod_template(body)
    container = pod["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "4"
    assert container["command"] == ["python", "-m", "training.launch"]
    args = container["args"]
    assert args[:4] == ["--nnodes", "2", "--nproc-per-node", "4"]
    assert args[args.index("--checkpoint-dir") + 1] == "/checkpoints/cnn-mnist-0001"
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/checkpoints", "/data"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRAINOPS_JOB_ID"] == "cnn-mnist-0001"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.trainops:5000"
    assert [p["containerPort"] for p in container["ports"]] == [9400, 9401, 9402, 9403]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert {t["key"] for t in pod["spec"]["tolerations"]} == {"nvidia.com/gpu"}
    labels = body["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "trainops"
    assert labels["trainops.io/job-id"] == "cnn-mnist-0001"


def test_single_replica_job_never_restarts_in_place_and_ignores_disruptions() -> None:
    body = render(
        TrainingJobSpec(model="mlp", dataset="digits"), "mlp-digits-0002", "trainops", CONTEXT
    ).body
    assert body["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert body["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    assert body["spec"]["backoffLimit"] == 2
    assert "--standalone" in body["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "nodeSelector" not in body["spec"]["template"]["spec"]  # CPU pods go anywhere


@pytest.mark.parametrize("kind", ["auto", "TrainJob"])
@pytest.mark.parametrize("nodes", [1, 2])
def test_a_gpu_type_selects_its_nodes_by_product_label(kind: str, nodes: int) -> None:
    policy = KubernetesPolicy(gpu_products={"A100": "NVIDIA-A100-SXM4-40GB"})
    spec = TrainingJobSpec(
        model="cnn", dataset="mnist", nodes=nodes, gpus_per_node=2, gpu_type="A100", kind=kind
    )
    body = render(spec, "cnn-mnist-0002", "trainops", RenderContext(policy, "http://m:5000")).body
    validate(body)
    if body["kind"] == "TrainJob":
        selector = body["spec"]["podSpecOverrides"][0]["nodeSelector"]
    else:
        selector = pod_template(body)["spec"]["nodeSelector"]
    assert selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    # Without a mapping of its own, a type takes its most common part's label.
    default = render(spec, "cnn-mnist-0003", "trainops", CONTEXT).body
    assert "NVIDIA-A100" in str(default)


def test_a_gpu_type_without_gpus_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="gpu_type H100 needs GPUs; set gpus_per_node"):
        TrainingJobSpec(model="cnn", dataset="mnist", gpu_type="H100")
