"""Label selectors (the query syntax and LabelSelector objects) and field selectors, with the
fields each resource supports."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube_api.errors import bad_request

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=|\s+in\s+|\s+notin\s+)\s*(?P<value>.*?))?\s*$"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # !=, notin


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    requirements = []
    for part in _split(text):
        m = _REQUIREMENT.match(part)
        if m is None:
            raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: key")
        key, op, value = m["key"], (m["op"] or "").strip(), (m["value"] or "").strip()
        if m["neg"]:
            if op:
                raise bad_request(f"unable to parse requirement: found '{op}', expected: ','")
            requirements.append(Requirement(key, "!exists"))
        elif not op:
            requirements.append(Requirement(key, "exists"))
        elif op in ("in", "notin"):
            if not (value.startswith("(") and value.endswith(")")):
                raise bad_request(f"unable to parse requirement: found '{value}', expected: '('")
            values = tuple(v.strip() for v in value[1:-1].split(",") if v.strip())
            requirements.append(Requirement(key, op, values))
        else:
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
    return requirements


def matches_labels(requirements: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in requirements)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        req = Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ()))
        if not req.matches(labels):
            return False
    return True


# -- field selectors ---------------------------------------------------------------------


def _get(path: str) -> Callable[[dict[str, Any]], str]:
    parts = path.split(".")

    def read(obj: dict[str, Any]) -> str:
        node: Any = obj
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return ""
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node)

    return read


_COMMON = ("metadata.name", "metadata.namespace")
FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): (
        *_COMMON,
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    ("", "events"): (
        *_COMMON,
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("batch", "jobs"): (*_COMMON, "status.successful"),
    ("", "nodes"): (*_COMMON, "spec.unschedulable"),
    ("", "namespaces"): (*_COMMON, "status.phase"),
    ("", "secrets"): (*_COMMON, "type"),
}
EVENTS_V1_FIELDS = {
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    equal: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.field == "source":
            actual = (obj.get("source") or {}).get("component", "")
        elif self.field == "status.successful":
            actual = str((obj.get("status") or {}).get("succeeded", 0))
        else:
            actual = _get(self.field)(obj)
        return (actual == self.value) == self.equal


def parse_field_selector(
    text: str | None, storage: tuple[str, str], crd: bool, events_v1: bool = False
) -> list[FieldRequirement]:
    if not text:
        return []
    supported = _COMMON if crd else FIELDS.get(storage, _COMMON)
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            field, value = part.split("!=", 1)
            equal = False
        elif "==" in part:
            field, value = part.split("==", 1)
            equal = True
        elif "=" in part:
            field, value = part.split("=", 1)
            equal = True
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if events_v1:
            field = EVENTS_V1_FIELDS.get(field, field)
        if field not in supported:
            if crd:
                known = ", ".join(f'"{f}"' for f in supported)
                raise bad_request(f'"{field}" is not a known field selector: only {known}')
            raise bad_request(f"field label not supported: {field}")
        out.append(FieldRequirement(field, value.strip(), equal))
    return out


def matches_fields(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)
