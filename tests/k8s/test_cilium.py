"""k8s/components/cilium: the base's NetworkPolicies as CiliumNetworkPolicies. Each policy
validates against Cilium's CRD schema (tests/k8s/crds/cilium.io, unknown fields rejected), says
what the NetworkPolicy of its name says, and replaces it in every overlay it is added to."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.k8s.manifests import (
    COMPONENTS,
    KUSTOMIZE,
    NO_KUSTOMIZE,
    OVERLAYS,
    base_resources,
    build,
    build_with_components,
    crd_validator,
    validate,
)

CILIUM = COMPONENTS / "cilium"


def shipped_policies() -> dict[str, dict]:
    documents = yaml.safe_load_all((CILIUM / "networkpolicy.yaml").read_text())
    return {d["metadata"]["name"]: d for d in documents if d}


def base_policies() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in base_resources() if d["kind"] == "NetworkPolicy"}


def as_cilium(spec: dict) -> dict:
    """What a NetworkPolicy of the kinds k8s/base uses means in Cilium's terms: pod selectors
    are endpoint selectors of the same namespace, a rule without peers admits every source, a
    policy without rules denies."""
    if spec.get("policyTypes") != ["Ingress"]:
        raise NotImplementedError(f"translate policyTypes {spec.get('policyTypes')} too")
    rules = []
    for rule in spec.get("ingress", []):
        out: dict = {}
        peers = rule.get("from")
        if peers is None:
            out["fromEntities"] = ["all"]
        else:
            out["fromEndpoints"] = [_endpoints(peer) for peer in peers]
        if "ports" in rule:
            ports = []
            for port in rule["ports"]:
                translated = {"port": str(port["port"]), "protocol": port.get("protocol", "TCP")}
                if "endPort" in port:
                    translated["endPort"] = port["endPort"]
                ports.append(translated)
            out["toPorts"] = [{"ports": ports}]
        rules.append(out)
    return {"endpointSelector": spec["podSelector"], "ingress": rules or [{}]}


def _endpoints(peer: dict) -> dict:
    """A podSelector peer; with an empty namespaceSelector, such pods of any namespace (Cilium
    selects those by the namespace label every endpoint has)."""
    if set(peer) == {"podSelector"}:
        return peer["podSelector"]
    if set(peer) == {"podSelector", "namespaceSelector"} and peer["namespaceSelector"] == {}:
        any_namespace = {"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"}
        return {**peer["podSelector"], "matchExpressions": [any_namespace]}
    raise NotImplementedError(f"translate the peer {peer} too")


def test_each_cilium_policy_validates_against_the_crd_schema() -> None:
    for policy in shipped_policies().values():
        validate({**policy, "metadata": {**policy["metadata"], "namespace": "trainops"}})


def test_the_schema_rejects_a_misspelt_field_and_a_wrong_value() -> None:
    policy = shipped_policies()["trainers"]
    validator = crd_validator(policy["apiVersion"], policy["kind"])
    validator.validate(policy)
    misspelt = copy.deepcopy(policy)
    misspelt["spec"]["ingress"][0]["fromEndpoint"] = misspelt["spec"]["ingress"][0].pop(
        "fromEndpoints"
    )
    with pytest.raises(jsonschema.ValidationError, match="fromEndpoint"):
        validator.validate(misspelt)
    lowercase = copy.deepcopy(policy)
    lowercase["spec"]["ingress"][1]["toPorts"][0]["ports"][0]["protocol"] = "tcp"
    with pytest.raises(jsonschema.ValidationError, match="tcp"):
        validator.validate(lowercase)


def test_each_cilium_policy_says_what_the_networkpolicy_of_its_name_says() -> None:
    cilium, base = shipped_policies(), base_policies()
    assert set(cilium) == set(base)
    for name, policy in base.items():
        assert cilium[name]["spec"] == as_cilium(policy["spec"]), name


@pytest.mark.skipif(KUSTOMIZE is None, reason=NO_KUSTOMIZE)
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_component_replaces_the_networkpolicies_of_any_overlay(overlay: Path) -> None:
    documents = build_with_components(overlay, CILIUM)
    assert not [d for d in documents if d["kind"] == "NetworkPolicy"]
    policies = [d for d in documents if d["kind"] == "CiliumNetworkPolicy"]
    assert {p["metadata"]["name"] for p in policies} == set(base_policies())
    for policy in policies:
        assert policy["metadata"]["namespace"] == "trainops"
        assert policy["metadata"]["labels"]["app.kubernetes.io/part-of"] == "trainops"
        validate(policy)

    # Nothing else changes.
    def by_name(docs: list[dict]) -> list[dict]:
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

    others = [d for d in documents if d["kind"] != "CiliumNetworkPolicy"]
    assert by_name(others) == by_name([d for d in build(overlay) if d["kind"] != "NetworkPolicy"])
