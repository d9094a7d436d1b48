"""RBAC, as the API server's authorizer applies it to the one user of the kubeconfig: Roles bind
in their namespace, ClusterRoles everywhere (or in a namespace, through a RoleBinding)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "trainops"
SERVICE_ACCOUNT = "trainops-mcp"
DISCOVERY_PATHS = ("/version", "/api", "/apis", "/openapi", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class PolicyRule:
    verbs: frozenset[str]
    api_groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, rule: Mapping[str, Any]) -> PolicyRule:
        return cls(
            verbs=frozenset(rule.get("verbs") or ()),
            api_groups=frozenset(rule.get("apiGroups") or ()),
            resources=frozenset(rule.get("resources") or ()),
            resource_names=frozenset(rule.get("resourceNames") or ()),
            non_resource_urls=frozenset(rule.get("nonResourceURLs") or ()),
        )

    def allows(self, verb: str, group: str, resource: str, name: str | None) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and group not in self.api_groups:
            return False
        base, _, sub = resource.partition("/")
        if not (
            "*" in self.resources
            or resource in self.resources
            or (sub and (f"{base}/*" in self.resources or f"*/{sub}" in self.resources))
        ):
            return False
        if self.resource_names:
            return name is not None and name in self.resource_names
        return True

    def allows_path(self, verb: str, path: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        return any(
            u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1]))
            for u in self.non_resource_urls
        )


@dataclass(frozen=True)
class Rbac:
    """What one user may do: rules per namespace, and cluster-wide rules."""

    user: str
    namespaced: Mapping[str, tuple[PolicyRule, ...]] = field(default_factory=dict)
    cluster: tuple[PolicyRule, ...] = ()

    @classmethod
    def from_rules(
        cls,
        role: Iterable[Mapping[str, Any]] = (),
        cluster_role: Iterable[Mapping[str, Any]] = (),
        *,
        namespace: str = NAMESPACE,
        service_account: str = SERVICE_ACCOUNT,
    ) -> Rbac:
        """Rules written as in a Role (granted in `namespace`) and a ClusterRole."""
        return cls(
            user=f"system:serviceaccount:{namespace}:{service_account}",
            namespaced={namespace: tuple(PolicyRule.parse(r) for r in role)},
            cluster=tuple(PolicyRule.parse(r) for r in cluster_role),
        )

    @classmethod
    def from_manifest(
        cls, path: Path, *, namespace: str = NAMESPACE, service_account: str = SERVICE_ACCOUNT
    ) -> Rbac:
        """The Roles and ClusterRoles of a manifest file that bind to the service account (every
        one of them when the file has no bindings), the Roles deployed in `namespace`."""
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        user = f"system:serviceaccount:{namespace}:{service_account}"
        roles = {
            (d["metadata"].get("namespace", namespace), d["metadata"]["name"]): _rules(d)
            for d in docs
            if d["kind"] == "Role"
        }
        cluster_roles = {
            d["metadata"]["name"]: _rules(d) for d in docs if d["kind"] == "ClusterRole"
        }
        bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
        namespaced: dict[str, tuple[PolicyRule, ...]] = {}
        cluster: tuple[PolicyRule, ...] = ()
        if not bindings:
            for (ns, _), rules in roles.items():
                namespaced[ns] = namespaced.get(ns, ()) + rules
            cluster = tuple(r for rules in cluster_roles.values() for r in rules)
            return cls(user, namespaced, cluster)
        for binding in bindings:
            where = binding["metadata"].get("namespace", namespace)
            if not any(
                _subject_is(s, where, namespace, service_account)
                for s in binding.get("subjects") or []
            ):
                continue
            ref = binding["roleRef"]
            if ref["kind"] == "ClusterRole":
                rules = cluster_roles.get(ref["name"], ())
            else:
                rules = roles.get((where, ref["name"]), ())
            if binding["kind"] == "ClusterRoleBinding":
                cluster += rules
            else:
                namespaced[where] = namespaced.get(where, ()) + rules
        return cls(user, namespaced, cluster)

    def allows(
        self,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str | None,
        name: str | None,
    ) -> bool:
        full = f"{resource}/{subresource}" if subresource else resource
        rules = self.cluster + (self.namespaced.get(namespace, ()) if namespace else ())
        return any(r.allows(verb, group, full, name) for r in rules)

    def allows_path(self, verb: str, path: str) -> bool:
        if any(path == p or path.startswith(p + "/") for p in DISCOVERY_PATHS):
            return True
        return any(r.allows_path(verb, path) for r in self.cluster)


def _rules(doc: Mapping[str, Any]) -> tuple[PolicyRule, ...]:
    return tuple(PolicyRule.parse(r) for r in doc.get("rules") or ())


def _subject_is(
    subject: Mapping[str, Any], binding_ns: str, namespace: str, service_account: str
) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return (
            subject.get("name") == service_account
            and subject.get("namespace", binding_ns) == namespace
        )
    if kind == "Group":
        return subject.get("name") in (
            "system:authenticated",
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
        )
    if kind == "User":
        return subject.get("name") == f"system:serviceaccount:{namespace}:{service_account}"
    return False
