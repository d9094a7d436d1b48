"""What the server serves: the resource types (built-in and from CRD files) and the discovery
documents that describe them (/version, /api, /apis, APIResourceLists, aggregated discovery)."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VERSION = "v1.33.1"
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ResourceType:
    """One resource in one served group version."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    storage: tuple[str, str] | None = None
    """(group, plural) where the objects live when another resource stores them."""
    crd: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        return self.storage or (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return any(s.name == "status" for s in self.subresources)

    def subresource(self, name: str) -> Subresource | None:
        return next((s for s in self.subresources if s.name == name), None)


def _core(
    plural: str, singular: str, kind: str, namespaced: bool = True, **kw: Any
) -> ResourceType:
    return ResourceType("", "v1", plural, singular, kind, namespaced, **kw)


BUILTIN: tuple[ResourceType, ...] = (
    _core(
        "pods",
        "pod",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources=(
            Subresource("log", "Pod", ("get",)),
            Subresource("status", "Pod", STATUS_VERBS),
            Subresource("eviction", "Eviction", ("create",), "policy", "v1"),
        ),
    ),
    _core("events", "event", "Event", short_names=("ev",)),
    _core("configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    _core("secrets", "secret", "Secret"),
    _core(
        "nodes",
        "node",
        "Node",
        namespaced=False,
        short_names=("no",),
        subresources=(Subresource("status", "Node", STATUS_VERBS),),
    ),
    _core(
        "namespaces",
        "namespace",
        "Namespace",
        namespaced=False,
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        short_names=("ns",),
        subresources=(Subresource("status", "Namespace", STATUS_VERBS),),
    ),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        True,
        categories=("all",),
        subresources=(Subresource("status", "Job", STATUS_VERBS),),
    ),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        True,
        short_names=("ev",),
        storage=("", "events"),
    ),
)

JOBSET = ResourceType(
    "jobset.x-k8s.io",
    "v1alpha2",
    "jobsets",
    "jobset",
    "JobSet",
    True,
    subresources=(Subresource("status", "JobSet", STATUS_VERBS),),
    crd=True,
)
"""Installed with Trainer v2, which builds its TrainJobs on it; served without a schema."""


@dataclass(frozen=True)
class Crd:
    """A CustomResourceDefinition read from a file: names, scope and each served version's
    openAPIV3Schema."""

    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    schemas: dict[str, dict[str, Any]]
    """Served version -> openAPIV3Schema, the storage version first."""
    subresources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Crd:
        return _load_crd(str(path), path.stat().st_mtime_ns)

    @classmethod
    def parse(cls, text: str) -> Crd:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        spec = doc["spec"]
        names = spec["names"]
        served = [v for v in spec["versions"] if v.get("served", True)]
        served.sort(key=lambda v: not v.get("storage", False))
        return cls(
            group=spec["group"],
            plural=names["plural"],
            singular=names.get("singular", names["kind"].lower()),
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            schemas={v["name"]: v["schema"]["openAPIV3Schema"] for v in served},
            subresources={v["name"]: v.get("subresources") or {} for v in served},
        )

    def resource_types(self) -> list[ResourceType]:
        types = []
        for version in self.schemas:
            subs = []
            if "status" in self.subresources.get(version, {}):
                subs.append(Subresource("status", self.kind, STATUS_VERBS))
            if "scale" in self.subresources.get(version, {}):
                subs.append(Subresource("scale", "Scale", STATUS_VERBS, "autoscaling", "v1"))
            types.append(
                ResourceType(
                    self.group,
                    version,
                    self.plural,
                    self.singular,
                    self.kind,
                    self.namespaced,
                    short_names=self.short_names,
                    categories=self.categories,
                    subresources=tuple(subs),
                    storage=(self.group, self.plural),
                    crd=True,
                )
            )
        return types


@functools.cache
def _load_crd(path: str, mtime_ns: int) -> Crd:
    if path.endswith(".gz"):
        return Crd.parse(gzip.decompress(Path(path).read_bytes()).decode())
    return Crd.parse(Path(path).read_text())


def load_crds(folder: Path, groups: Iterable[str]) -> list[Crd]:
    wanted = set(groups)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yaml.gz")])
    crds = [Crd.load(p) for p in files]
    return [c for c in crds if c.group in wanted]


def _hash(rtype: ResourceType) -> str:
    digest = hashlib.sha256(f"{rtype.group}/{rtype.version}/{rtype.plural}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


class Catalog:
    """The resource types this server serves, and its discovery documents."""

    def __init__(self, types: Iterable[ResourceType], address: str) -> None:
        self.types = list(types)
        self.address = address
        self._by_path = {(t.group, t.version, t.plural): t for t in self.types}
        self._group_versions: dict[str, list[str]] = {}
        for t in self.types:
            versions = self._group_versions.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def serves(self, group: str, version: str | None = None) -> bool:
        versions = self._group_versions.get(group) or []
        return bool(versions) and (version is None or version in versions)

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return next(
            (t for t in self.types if t.group == group and t.version == version and t.kind == kind),
            None,
        )

    def storage_types(self) -> dict[tuple[str, str], ResourceType]:
        """The preferred resource type of each stored (group, plural)."""
        found: dict[tuple[str, str], ResourceType] = {}
        for t in self.types:
            if t.storage is None or t.storage == (t.group, t.plural):
                found.setdefault(t.storage_key, t)
        return found

    # -- legacy discovery ---------------------------------------------------------------

    @staticmethod
    def version() -> dict[str, Any]:
        major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
        return {
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "minCompatibilityMajor": major,
            "minCompatibilityMinor": str(int(minor) - 1),
            "gitVersion": KUBERNETES_VERSION,
            "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
            "gitTreeState": "clean",
            "buildDate": "2025-05-15T08:19:08Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}
            ],
        }

    def _group(self, name: str) -> dict[str, Any]:
        versions = [
            {"groupVersion": f"{name}/{v}", "version": v} for v in self._group_versions[name]
        ]
        return {"name": name, "versions": versions, "preferredVersion": versions[0]}

    def group_list(self) -> dict[str, Any]:
        groups = [self._group(g) for g in self._group_versions if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def group(self, name: str) -> dict[str, Any]:
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(name)}

    def resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for t in self.types:
            if (t.group, t.version) != (group, version):
                continue
            entry: dict[str, Any] = {
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": list(t.verbs),
            }
            if t.short_names:
                entry["shortNames"] = list(t.short_names)
            if t.categories:
                entry["categories"] = list(t.categories)
            entry["storageVersionHash"] = _hash(t)
            resources.append(entry)
            for sub in t.subresources:
                sub_entry: dict[str, Any] = {
                    "name": f"{t.plural}/{sub.name}",
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": sub.kind,
                    "verbs": list(sub.verbs),
                }
                if sub.group is not None:
                    sub_entry.update(group=sub.group, version=sub.version)
                resources.append(sub_entry)
        api_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": api_version,
            "resources": resources,
        }

    # -- aggregated discovery (apidiscovery.k8s.io) --------------------------------------

    def aggregated(self, legacy: bool, media_version: str) -> dict[str, Any]:
        """The APIGroupDiscoveryList for /api (legacy) or /apis."""
        items = []
        for group, versions in self._group_versions.items():
            if bool(group) == legacy:
                continue
            items.append(
                {
                    "metadata": {"name": group, "creationTimestamp": None}
                    if group
                    else {"creationTimestamp": None},
                    "versions": [
                        {
                            "version": v,
                            "resources": self._aggregated_resources(group, v),
                            "freshness": "Current",
                        }
                        for v in versions
                    ],
                }
            )
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": f"apidiscovery.k8s.io/{media_version}",
            "metadata": {},
            "items": items,
        }

    def _aggregated_resources(self, group: str, version: str) -> list[dict[str, Any]]:
        out = []
        for t in self.types:
            if (t.group, t.version) != (group, version):
                continue
            entry: dict[str, Any] = {
                "resource": t.plural,
                "responseKind": {"group": group, "version": version, "kind": t.kind},
                "scope": "Namespaced" if t.namespaced else "Cluster",
                "singularResource": t.singular,
                "verbs": list(t.verbs),
            }
            if t.short_names:
                entry["shortNames"] = list(t.short_names)
            if t.categories:
                entry["categories"] = list(t.categories)
            if t.subresources:
                entry["subresources"] = [
                    {
                        "subresource": s.name,
                        "responseKind": {
                            "group": group if s.group is None else s.group,
                            "version": version if s.version is None else s.version,
                            "kind": s.kind,
                        },
                        "verbs": list(s.verbs),
                    }
                    for s in t.subresources
                ]
            out.append(entry)
        return out


def wants_aggregated(accept: str) -> str | None:
    """The aggregated-discovery media version an Accept header prefers over plain JSON, if any.
    The server answers with the first type of the list it can produce, as a real one does."""
    for entry in accept.split(","):
        parts = [p.strip() for p in entry.split(";")]
        media, params = parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if media in ("application/json", "*/*", "application/*") and "g" not in params:
            return None
        if (
            media == "application/json"
            and params.get("g") == "apidiscovery.k8s.io"
            and params.get("as") == "APIGroupDiscoveryList"
            and params.get("v") in ("v2", "v2beta1")
        ):
            return params["v"]
    return None
