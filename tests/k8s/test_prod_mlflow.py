"""k8s/overlays/prod: MLflow on PostgreSQL and S3/MinIO, its credentials only in Secrets that
are created on the cluster (the commands to create them documented beside it), nothing on a
volume, and everything else as the base has it."""

from __future__ import annotations

import re

import pytest

from tests.k8s.manifests import (
    COMPONENTS,
    KUSTOMIZE,
    NO_KUSTOMIZE,
    OVERLAYS,
    base_resources,
    build,
    build_with_components,
    find,
    generated,
)

pytestmark = pytest.mark.skipif(KUSTOMIZE is None, reason=NO_KUSTOMIZE)

PROD = next(p for p in OVERLAYS if p.name == "prod")
COMPONENT = COMPONENTS / "mlflow-postgres-s3"
STORE_FLAGS = ("--backend-store-uri=", "--artifacts-destination=")


def mlflow_container(documents: list[dict]) -> dict:
    pod = find(documents, "Deployment", "mlflow")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "mlflow")


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def stores(documents: list[dict]) -> dict[str, str]:
    """What the MLflow pod reads from the ConfigMap that names the stores, by variable."""
    out = {}
    for name, entry in env_of(mlflow_container(documents)).items():
        ref = entry.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            config = find(documents, "ConfigMap", ref["name"])
            out[name] = config["data"][ref["key"]]
    return out


def test_prod_runs_mlflow_on_postgres_and_s3_and_keeps_nothing_on_a_volume() -> None:
    documents = build(PROD)
    container = mlflow_container(documents)
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["args"]
    assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in container["args"]
    assert "--serve-artifacts" in container["args"]
    # The kubelet leaves a $(VAR) it cannot resolve as it is: each must be in env.
    for variable in re.findall(r"\$\((\w+)\)", " ".join(container["args"])):
        assert variable in env_of(container), variable
    where = stores(documents)
    assert where["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert where["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert re.fullmatch(r"https?://[^/]+", where["MLFLOW_S3_ENDPOINT_URL"])
    assert generated(documents, "ConfigMap", "mlflow-stores")
    pod = find(documents, "Deployment", "mlflow")["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert "/data" not in {m["mountPath"] for m in container["volumeMounts"]}
    assert not any(
        d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "mlflow-data"
        for d in documents
    )
    # The other claims stay.
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    assert {"trainops-checkpoints", "trainops-datasets", "prometheus-data"} <= claims
    strategy = find(documents, "Deployment", "mlflow")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"


def test_prod_reads_every_credential_from_a_secret_and_commits_none() -> None:
    documents = build(PROD)
    assert not any(d["kind"] == "Secret" for d in documents)
    env = env_of(mlflow_container(documents))
    for name in ("PGUSER", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
    for name, entry in env.items():
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY|USER", name):
            assert "value" not in entry, name
    # No user or password inside a URI, nor anywhere in what is applied.
    for value in stores(documents).values():
        assert "@" not in value, value
    text = str(documents).lower()
    assert "password=" not in text and "aws_secret_access_key=" not in text
    # Nothing else under k8s/ holds a credential file or generates a Secret from one.
    k8s = PROD.parent.parent
    assert not [p for p in k8s.rglob("*") if p.suffix == ".env" or p.name == ".env"]
    assert "secretGenerator" not in "".join(p.read_text() for p in k8s.rglob("*.yaml"))


def test_the_documented_commands_create_every_secret_and_key_prod_reads() -> None:
    comment = "\n".join(
        line.removeprefix("#").strip()
        for line in (COMPONENT / "kustomization.yaml").read_text().splitlines()
        if line.startswith("#")
    ).replace("\\\n", " ")
    documented = {
        name: set(re.findall(r"--from-literal=(\w+)=", rest))
        for name, rest in re.findall(r"create secret generic ([\w-]+)(.*)", comment)
    }
    read: dict[str, set[str]] = {}
    for entry in mlflow_container(build(PROD))["env"]:
        if ref := entry.get("valueFrom", {}).get("secretKeyRef"):
            read.setdefault(ref["name"], set()).add(ref["key"])
    assert read and documented == read


def test_prod_mlflow_is_the_base_server_with_other_stores() -> None:
    base = mlflow_container(base_resources())
    prod = mlflow_container(build(PROD))
    assert [a for a in prod["args"] if not a.startswith(STORE_FLAGS)] == [
        a for a in base["args"] if not a.startswith(STORE_FLAGS)
    ]
    assert prod["command"] == base["command"]
    assert prod["securityContext"] == base["securityContext"]
    assert env_of(prod)["HOME"] == env_of(base)["HOME"]
    # The -full variant of the base's MLflow: it has the PostgreSQL drivers and boto3.
    assert prod["image"] == base["image"] + "-full"


@pytest.mark.parametrize("cilium", [False, True], ids=["networkpolicy", "cilium"])
def test_no_policy_keeps_mlflow_from_its_stores(cilium: bool) -> None:
    """The policies restrict ingress only: MLflow's connections to PostgreSQL and the object
    store go out unhindered, and its own port stays open."""
    documents = build_with_components(PROD, COMPONENTS / "cilium") if cilium else build(PROD)
    labels = find(documents, "Deployment", "mlflow")["spec"]["template"]["metadata"]["labels"]

    def selects_mlflow(selector: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    policies = [d for d in documents if d["kind"] in ("NetworkPolicy", "CiliumNetworkPolicy")]
    assert policies
    for policy in policies:
        spec = policy["spec"]
        if selects_mlflow(spec.get("podSelector", spec.get("endpointSelector", {}))):
            assert "Egress" not in spec.get("policyTypes", []), policy["metadata"]["name"]
            assert not {"egress", "egressDeny"} & set(spec), policy["metadata"]["name"]
    opened = find(documents, policies[0]["kind"], "mlflow")["spec"]["ingress"]
    assert "5000" in str(opened)
