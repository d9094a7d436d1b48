"""k8s/: every resource validates against the Kubernetes schema, every overlay builds with
kustomize and validates, and the base provides what the rendered jobs expect (claims, service
account, scrape labels)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from common.settings import KubernetesPolicy
from mcp_servers.kubernetes.manifests import RenderContext, render
from mcp_servers.kubernetes.schemas import TrainingJobSpec
from tests.k8s.manifests import (
    BASE,
    CLUSTER_SCOPED,
    COMPONENTS,
    KUBERNETES_VERSION,
    KUSTOMIZE,
    NO_KUSTOMIZE,
    OVERLAYS,
    base_resources,
    build,
    find,
    kustomization,
    validate,
)
from tests.support import REPO

needs_kustomize = pytest.mark.skipif(KUSTOMIZE is None, reason=NO_KUSTOMIZE)


def rendered_job(**overrides) -> dict:
    spec = TrainingJobSpec(model="cnn", dataset="mnist", **overrides)
    return render(spec, "cnn-mnist-1", "trainops", RenderContext(KubernetesPolicy())).body


def test_the_base_lists_every_file_and_each_resource_validates() -> None:
    listed = set(kustomization(BASE)["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for document in base_resources():
        document = copy.deepcopy(document)
        document["metadata"].setdefault("namespace", "trainops")
        if document["kind"] in CLUSTER_SCOPED:
            document["metadata"].pop("namespace")
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_builds_and_every_object_validates(overlay: Path) -> None:
    documents = build(overlay)
    for document in documents:
        validate(document)
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"]["namespace"] == "trainops", document["metadata"]
    keys = [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in documents]
    assert len(keys) == len(set(keys))
    assert {"Namespace", "Deployment", "Service", "NetworkPolicy"} <= {d["kind"] for d in documents}


def test_each_component_lists_every_file_it_holds() -> None:
    for component in sorted(p for p in COMPONENTS.iterdir() if p.is_dir()):
        spec = kustomization(component)
        assert spec["kind"] == "Component", component
        used = set(spec.get("resources", [])) | {
            patch["path"] for patch in spec.get("patches", []) if "path" in patch
        }
        on_disk = {p.name for p in component.glob("*.yaml")} - {"kustomization.yaml"}
        assert used == on_disk, component


def test_every_patch_names_an_object_that_exists() -> None:
    """kustomize applies a patch whose target matches nothing as a silent no-op."""
    documents = base_resources()
    for directory in [*OVERLAYS, *(p for p in COMPONENTS.iterdir() if p.is_dir())]:
        for patch in kustomization(directory).get("patches", []):
            if "target" in patch:
                target = patch["target"]
            else:
                body = yaml.safe_load(patch.get("patch") or (directory / patch["path"]).read_text())
                target = {"kind": body["kind"], "name": body["metadata"]["name"]}
            assert any(
                d["kind"] == target["kind"]
                and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])
                for d in documents
            ), f"{directory.name}: {target}"


@needs_kustomize
def test_the_overlays_size_the_quota_for_their_cluster() -> None:
    def quota(name: str) -> dict:
        overlay = next(p for p in OVERLAYS if p.name == name)
        return find(build(overlay), "ResourceQuota", "trainops-compute")["spec"]["hard"]

    assert quota("dev")["requests.nvidia.com/gpu"] == "0"
    assert quota("gpu")["requests.nvidia.com/gpu"] == "16"
    assert quota("prod") == quota("gpu")


def test_the_base_provides_what_rendered_jobs_mount_and_run_as() -> None:
    documents = base_resources()
    policy = KubernetesPolicy()
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    assert {policy.checkpoint_claim, policy.dataset_claim} <= claims
    trainer = find(documents, "ServiceAccount", policy.service_account)
    assert trainer["automountServiceAccountToken"] is False
    pod = rendered_job()["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == policy.service_account
    assert {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    } <= claims
    assert kustomization(BASE)["namespace"] in policy.allowed_namespaces


def test_the_mcp_server_may_do_what_the_cluster_backend_needs_and_no_more() -> None:
    role = find(base_resources(), "Role", "trainops-mcp")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for group, resource in [("batch", "jobs"), ("kubeflow.org", "pytorchjobs")]:
        assert {"create", "get", "list", "watch", "delete"} <= granted[(group, resource)]
    assert granted[("", "pods/log")] == {"get"}
    assert not any("pods/exec" in r or "secrets" in r for _, r in granted)
    assert all("*" not in verbs for verbs in granted.values())


def test_prometheus_scrapes_the_exporters_that_rendered_pods_declare() -> None:
    config = yaml.safe_load((BASE / "prometheus.yml").read_text())
    job = next(c for c in config["scrape_configs"] if c["job_name"] == "trainops-training")
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    template = rendered_job(gpus_per_node=2)["spec"]["template"]
    labels, annotations = template["metadata"]["labels"], template["metadata"]["annotations"]

    def meta(prefix: str, key: str) -> str:
        return f"__meta_kubernetes_pod_{prefix}_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)

    managed = relabel[(meta("label", "app.kubernetes.io/managed-by"),)]
    assert re.fullmatch(managed["regex"], labels["app.kubernetes.io/managed-by"])
    scrape = relabel[(meta("annotation", "prometheus.io/scrape"),)]
    assert re.fullmatch(scrape["regex"], annotations["prometheus.io/scrape"])
    assert relabel[(meta("label", "trainops.io/job-id"),)]["target_label"] == "job_id"
    port_rule = relabel[("__meta_kubernetes_pod_container_port_name",)]
    ports = template["spec"]["containers"][0]["ports"]
    assert len(ports) == 2 and all(re.fullmatch(port_rule["regex"], p["name"]) for p in ports)
    policy = find(base_resources(), "NetworkPolicy", "trainers")
    allowed = next(r["ports"][0] for r in policy["spec"]["ingress"] if "ports" in r)
    assert all(allowed["port"] <= p["containerPort"] <= allowed["endPort"] for p in ports)


def test_prometheus_accepts_the_scrape_config(tmp_path: Path) -> None:
    """promtool checks the relabelling; Debian's build lacks Kubernetes discovery, so the test
    swaps that one block for static targets."""
    promtool = shutil.which("promtool") or shutil.which(
        "promtool", path=str(REPO / ".venv/opt/prometheus/root/usr/bin")
    )
    if promtool is None:
        pytest.skip("promtool is not installed (make prometheus installs it)")
    config = yaml.safe_load((BASE / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9400"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
