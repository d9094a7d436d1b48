"""kube-scheduler's default profile, for the filters that matter here: node unschedulable,
taints and tolerations, node selector and required node affinity, and resource fit beside the
node's other non-terminal pods. A pod that fits nowhere stays Pending with PodScheduled=False
and a FailedScheduling event worded as the scheduler words it; it is retried when pods or
nodes change."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from tests.kube_api.events import Recorder
from tests.kube_api.outcomes import Scripts
from tests.kube_api.store import Store, now

SCHEDULER = "default-scheduler"
INSTANCE = f"{SCHEDULER}-{os.uname().nodename}"
UNRESOLVABLE = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def quantity(value: Any) -> Decimal:
    return Decimal(parse_quantity(value))


def pod_requests(spec: dict[str, Any]) -> dict[str, Decimal]:
    """What a pod asks for: the sum over its containers, or the largest init container's."""
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = total.get(name, Decimal(0)) + quantity(value)
    for container in spec.get("initContainers") or []:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = max(total.get(name, Decimal(0)), quantity(value))
    return total


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        operator = t.get("operator", "Equal")
        if operator == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    value = labels.get(key)
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def matches_node(spec: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    return any(
        all(_expression(e, labels) for e in term.get("matchExpressions") or [])
        and all(_expression(e, fields) for e in term.get("matchFields") or [])
        for term in terms
    )


@dataclass
class Fit:
    node: str | None
    reasons: list[str] = field(default_factory=list)
    """Per failing node: its reasons, and whether preemption could help."""
    preemption: list[str] = field(default_factory=list)


class Scheduler:
    def __init__(self, store: Store, recorder: Recorder, scripts: Scripts) -> None:
        self.store = store
        self.recorder = recorder
        self.scripts = scripts

    def fit(
        self, pod: dict[str, Any], nodes: list[dict[str, Any]], used: dict[str, dict[str, Decimal]]
    ) -> Fit:
        spec = pod.get("spec") or {}
        want = pod_requests(spec)
        fit = Fit(None)
        for node in nodes:
            name = node["metadata"]["name"]
            nspec = node.get("spec") or {}
            if nspec.get("unschedulable"):
                fit.reasons.append("node(s) were unschedulable")
                fit.preemption.append(UNRESOLVABLE)
                continue
            untolerated = next(
                (
                    t
                    for t in nspec.get("taints") or []
                    if t.get("effect") in ("NoSchedule", "NoExecute")
                    and not tolerates(spec.get("tolerations") or [], t)
                ),
                None,
            )
            if untolerated is not None:
                fit.reasons.append(
                    f"node(s) had untolerated taint {{{untolerated['key']}: "
                    f"{untolerated.get('value', '')}}}"
                )
                fit.preemption.append(UNRESOLVABLE)
                continue
            if not matches_node(spec, node):
                fit.reasons.append("node(s) didn't match Pod's node affinity/selector")
                fit.preemption.append(UNRESOLVABLE)
                continue
            allocatable = {
                k: quantity(v)
                for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()
            }
            taken = used.get(name, {})
            short = []
            if taken.get("pods", Decimal(0)) + 1 > allocatable.get("pods", Decimal(110)):
                short.append("Too many pods")
            for resource, amount in sorted(want.items()):
                if amount <= 0:
                    continue
                if taken.get(resource, Decimal(0)) + amount > allocatable.get(resource, Decimal(0)):
                    short.append(f"Insufficient {resource}")
            if short:
                fit.reasons.extend(short)
                fit.preemption.append(NO_VICTIMS)
                continue
            fit.node = name
            return fit
        return fit

    @staticmethod
    def message(total: int, fit: Fit) -> str:
        def histogram(reasons: list[str]) -> str:
            return ", ".join(sorted(f"{n} {r}" for r, n in Counter(reasons).items()))

        text = f"0/{total} nodes are available: {histogram(fit.reasons)}."
        if fit.preemption:
            text += f" preemption: 0/{total} nodes are available: {histogram(fit.preemption)}."
        return text

    def step(self) -> None:
        nodes, _ = self.store.objects("", "nodes")
        nodes.sort(key=lambda n: n["metadata"]["name"])
        pods, _ = self.store.objects("", "pods")
        used: dict[str, dict[str, Decimal]] = {}
        pending = []
        for pod in pods:
            spec = pod.get("spec") or {}
            phase = (pod.get("status") or {}).get("phase")
            node = spec.get("nodeName")
            if node:
                if phase not in ("Succeeded", "Failed"):
                    totals = used.setdefault(node, {})
                    for k, v in pod_requests(spec).items():
                        totals[k] = totals.get(k, Decimal(0)) + v
                    totals["pods"] = totals.get("pods", Decimal(0)) + 1
            elif (
                not pod["metadata"].get("deletionTimestamp")
                and spec.get("schedulerName", SCHEDULER) == SCHEDULER
                and phase in (None, "Pending")
            ):
                pending.append(pod)
        pending.sort(
            key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["resourceVersion"])
        )
        for pod in pending:
            outcome = self.scripts.for_pod(pod)
            if outcome.kind == "unschedulable":
                n = len(nodes)
                self._unschedulable(
                    pod,
                    outcome.message
                    or f"0/{n} nodes are available: {n} Insufficient cpu. preemption: 0/{n} nodes "
                    f"are available: {n} {NO_VICTIMS}.",
                )
                continue
            fit = self.fit(pod, nodes, used)
            if fit.node is None:
                self._unschedulable(pod, self.message(len(nodes), fit))
                continue
            totals = used.setdefault(fit.node, {})
            for k, v in pod_requests(pod.get("spec") or {}).items():
                totals[k] = totals.get(k, Decimal(0)) + v
            totals["pods"] = totals.get("pods", Decimal(0)) + 1
            self._bind(pod, fit.node)

    def _key(self, pod: dict[str, Any]) -> tuple[str, str, str, str]:
        return ("", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _bind(self, pod: dict[str, Any], node: str) -> None:
        def bind(p: dict[str, Any]) -> dict[str, Any] | None:
            if p["spec"].get("nodeName") or p["metadata"].get("deletionTimestamp"):
                return None
            p["spec"]["nodeName"] = node
            set_condition(p, "PodScheduled", "True")
            return p

        bound = self.store.mutate(self._key(pod), bind)
        if bound is not None and bound["spec"].get("nodeName") == node:
            meta = pod["metadata"]
            self.recorder.new_event(
                bound,
                "Normal",
                "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
                controller=SCHEDULER,
                instance=INSTANCE,
                action="Binding",
            )

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c["type"] == "PodScheduled"), None)
        if current and current.get("message") == message:
            return

        def mark(p: dict[str, Any]) -> dict[str, Any] | None:
            if p["spec"].get("nodeName"):
                return None
            set_condition(p, "PodScheduled", "False", "Unschedulable", message)
            return p

        marked = self.store.mutate(self._key(pod), mark)
        if marked is not None and not marked["spec"].get("nodeName"):
            self.recorder.new_event(
                marked,
                "Warning",
                "FailedScheduling",
                message,
                controller=SCHEDULER,
                instance=INSTANCE,
                action="Scheduling",
            )


def set_condition(
    obj: dict[str, Any],
    type_: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    probe: bool = True,
) -> None:
    """Set a pod-style condition (lastProbeTime, lastTransitionTime) in obj.status."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    current = next((c for c in conditions if c["type"] == type_), None)
    entry: dict[str, Any] = {"type": type_, "status": status}
    if probe:
        entry["lastProbeTime"] = None
    entry["lastTransitionTime"] = (
        current["lastTransitionTime"]
        if current and current.get("status") == status and current.get("lastTransitionTime")
        else now()
    )
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    if current is None:
        conditions.append(entry)
    else:
        conditions[conditions.index(current)] = entry
