"""k8s/: every resource validates against the Kubernetes schema, overlays patch what exists, and
the base provides what the rendered jobs expect (claims, service account, scrape labels)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from common.settings import KubernetesPolicy
from mcp_servers.kubernetes.manifests import RenderContext, render
from mcp_servers.kubernetes.schemas import TrainingJobSpec
from tests.support import REPO

K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSION = "1.33"


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def base_resources() -> list[dict]:
    documents = []
    for name in kustomization(BASE)["resources"]:
        documents += [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    return documents


def find(documents: list[dict], kind: str, name: str) -> dict:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


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
        if document["kind"] in ("ClusterRole", "ClusterRoleBinding", "Namespace"):
            document["metadata"].pop("namespace")
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_patches_apply_and_still_validate(overlay: Path) -> None:
    spec = kustomization(overlay)
    assert (overlay / spec["resources"][0]).resolve() == BASE
    documents = base_resources()
    for patch in spec["patches"]:
        target = find(documents, patch["target"]["kind"], patch["target"]["name"])
        patched = jsonpatch.apply_patch(target, yaml.safe_load(patch["patch"]))
        patched["metadata"]["namespace"] = "trainops"
        kubernetes_validate.validate(patched, KUBERNETES_VERSION, strict=True)


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
