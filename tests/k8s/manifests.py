"""k8s/ as the tests read it: the base's files, overlays built by kustomize, and validation of
every object against its schema (Kubernetes' own, a CRD's under tests/k8s/crds/, or that of a
CRD the test API server loads: KubeRay's, Kubeflow's)."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from tests.kube_api.fixture import crd_text
from tests.support import REPO

K8S = REPO / "k8s"
BASE = K8S / "base"
COMPONENTS = K8S / "components"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
CRDS = Path(__file__).parent / "crds"
KUBERNETES_VERSION = "1.33"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def _kustomize_command() -> list[str] | None:
    """kustomize itself, else the one built into kubectl."""
    if path := shutil.which("kustomize"):
        return [path, "build"]
    if path := shutil.which("kubectl"):
        return [path, "kustomize"]
    return None


KUSTOMIZE = _kustomize_command()
NO_KUSTOMIZE = "neither kustomize nor kubectl is on PATH (kubectl kustomize builds the overlays)"


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def base_resources() -> list[dict]:
    documents = []
    for name in kustomization(BASE)["resources"]:
        documents += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return documents


def find(documents: list[dict], kind: str, name: str) -> dict:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def generated(documents: list[dict], kind: str, name: str) -> dict:
    """A generated object: its name is the generator's plus kustomize's hash suffix."""
    return next(
        d
        for d in documents
        if d["kind"] == kind and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", d["metadata"]["name"])
    )


@functools.cache
def _build(directory: Path) -> str:
    assert KUSTOMIZE is not None, NO_KUSTOMIZE
    result = subprocess.run(
        [*KUSTOMIZE, str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def build(directory: Path) -> list[dict]:
    """What `kubectl apply -k DIRECTORY` would send, as a fresh copy each call."""
    return [d for d in yaml.safe_load_all(_build(directory.resolve())) if d]


def build_with_components(overlay: Path, *components: Path) -> list[dict]:
    """An overlay with components added, as a user's own kustomization would add them."""
    with tempfile.TemporaryDirectory() as folder:
        # kustomize takes relative paths only.
        relative = [os.path.relpath(p, folder) for p in components]
        (Path(folder) / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(overlay, folder)],
                    "components": relative,
                }
            )
        )
        return [d for d in yaml.safe_load_all(_build.__wrapped__(Path(folder))) if d]


def _strict(schema: object) -> object:
    """A CRD's schema as the API server applies it to a create: unknown fields rejected
    (additionalProperties: false on every object that lists its properties, unless it keeps
    unknown fields)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out.setdefault("additionalProperties", False)
    return out


def crd_schema(api_version: str, kind: str) -> Path:
    """Where a custom resource's schema is kept: crds/<group>/<kind>_<version>.yaml."""
    group, _, version = api_version.rpartition("/")
    return CRDS / (group or "core") / f"{kind.lower()}_{version}.yaml"


@functools.cache
def custom_resource_schema(api_version: str, kind: str) -> dict | None:
    """A custom resource's schema: the file crd_schema names, else the openAPIV3Schema of its
    version in the CRD the test API server loads (<group>_<plural>.yaml, from ../shared/crds or
    the copies vendored in tests/kube_api/crds); None for a kind no CRD here defines."""
    path = crd_schema(api_version, kind)
    if path.exists():
        return yaml.safe_load(path.read_text())
    group, _, version = api_version.rpartition("/")
    try:
        crd = yaml.safe_load(crd_text(f"{group}_{kind.lower()}s.yaml"))
    except FileNotFoundError:
        return None
    if crd["spec"]["names"]["kind"] != kind:
        return None
    versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    return versions.get(version)


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = custom_resource_schema(api_version, kind)
    assert schema is not None, f"no schema for {kind} ({api_version}) in {CRDS} or the CRDs"
    return jsonschema.Draft7Validator(_strict(schema))


def validate(document: dict) -> None:
    """Raises when the object does not match its schema; cluster-scoped kinds lose the
    namespace kustomize never gives them."""
    document = copy.deepcopy(document)
    if document["kind"] in CLUSTER_SCOPED:
        document["metadata"].pop("namespace", None)
    if custom_resource_schema(document["apiVersion"], document["kind"]) is not None:
        crd_validator(document["apiVersion"], document["kind"]).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def ray_pods(cluster: dict) -> list[dict]:
    """The Pods KubeRay 1.7 makes of a RayCluster, as far as Pod Security goes, for checkov
    (which reads no CRDs): the head with the autoscaler container that autoscalerOptions
    configures, one pod of each worker group with the wait-gcs-ready init container, which
    takes the Ray container's securityContext, and the probes KubeRay gives Ray containers
    (ray-operator/controllers/ray/common/pod.go)."""
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    probe = {"httpGet": {"path": "/api/healthz", "port": 52365}, "periodSeconds": 5}

    def pod(template: dict, node_type: str, group: str) -> dict:
        pod_spec = copy.deepcopy(template["spec"])
        ray = pod_spec["containers"][0]
        ray.setdefault("livenessProbe", probe)
        ray.setdefault("readinessProbe", probe)
        labels = {
            **template.get("metadata", {}).get("labels", {}),
            "ray.io/cluster": name,
            "ray.io/node-type": node_type,
            "ray.io/group": group,
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{group}-{node_type}",
                "namespace": cluster["metadata"]["namespace"],
                "labels": labels,
            },
            "spec": pod_spec,
        }

    head = pod(spec["headGroupSpec"]["template"], "head", "headgroup")
    if spec.get("enableInTreeAutoscaling"):
        options = spec.get("autoscalerOptions", {})
        default_resources = {"cpu": "500m", "memory": "512Mi"}
        autoscaler = {
            "name": "autoscaler",
            "image": options.get("image", head["spec"]["containers"][0]["image"]),
            "imagePullPolicy": options.get("imagePullPolicy", "IfNotPresent"),
            "command": ["/bin/bash", "-lc", "--"],
            "args": ["ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME)"],
            "env": options.get("env", []),
            "volumeMounts": options.get("volumeMounts", []),
            "resources": options.get(
                "resources", {"requests": default_resources, "limits": default_resources}
            ),
        }
        if "securityContext" in options:
            autoscaler["securityContext"] = options["securityContext"]
        head["spec"]["containers"].append(autoscaler)
        head["spec"].setdefault("serviceAccountName", name)
    pods = [head]
    for group in spec.get("workerGroupSpecs", []):
        worker = pod(group["template"], "worker", group["groupName"])
        ray = worker["spec"]["containers"][0]
        wait = {
            "name": "wait-gcs-ready",
            "image": ray["image"],
            "imagePullPolicy": ray.get("imagePullPolicy", "IfNotPresent"),
            "command": ["/bin/bash", "-lc", "--"],
            "args": [f"until ray health-check --address {name}-head-svc:6379; do sleep 5; done"],
            "env": ray.get("env", []),
            "volumeMounts": ray.get("volumeMounts", []),
            "resources": {
                "requests": {"cpu": "200m", "memory": "256Mi"},
                "limits": {"cpu": "200m", "memory": "256Mi"},
            },
        }
        if "securityContext" in ray:
            wait["securityContext"] = ray["securityContext"]
        worker["spec"].setdefault("initContainers", []).append(wait)
        pods.append(worker)
    return copy.deepcopy(pods)  # nothing shared: YAML dumps would print aliases
