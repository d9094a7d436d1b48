"""k8s/ as the tests read it: the base's files, overlays built by kustomize, and validation of
every object against its schema (Kubernetes' own, or a CRD's under tests/k8s/crds/)."""

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
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = yaml.safe_load(crd_schema(api_version, kind).read_text())
    return jsonschema.Draft7Validator(_strict(schema))


def validate(document: dict) -> None:
    """Raises when the object does not match its schema; cluster-scoped kinds lose the
    namespace kustomize never gives them."""
    document = copy.deepcopy(document)
    if document["kind"] in CLUSTER_SCOPED:
        document["metadata"].pop("namespace", None)
    if crd_schema(document["apiVersion"], document["kind"]).exists():
        crd_validator(document["apiVersion"], document["kind"]).validate(document)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
