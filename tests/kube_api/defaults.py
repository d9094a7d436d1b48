"""Defaulting, as the API server does it before storing: the built-in types' defaults (pods,
pod templates, Jobs) and the `default`s of a CRD's structural schema."""

from __future__ import annotations

from typing import Any

from tests.kube_api.store import clone

JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name")
LEGACY_JOB_LABELS = ("controller-uid", "job-name")
DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def _image_pull_policy(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    if ":" not in name or name.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if "image" in container:
        container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
    resources = container.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if ref is not None:
            ref.setdefault("apiVersion", "v1")


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("initContainers") or []:
        _container(container)
    for container in spec.get("containers") or []:
        _container(container)
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            volume["configMap"].setdefault("defaultMode", 420)
        if "secret" in volume:
            volume["secret"].setdefault("defaultMode", 420)


def pod(obj: dict[str, Any]) -> None:
    """A pod on create: spec defaults, then what admission adds (service account, the default
    not-ready/unreachable tolerations), and its first status."""
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(clone(default))
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def qos_class(spec: dict[str, Any]) -> str:
    containers = spec.get("containers") or []
    requests = [(c.get("resources") or {}).get("requests") or {} for c in containers]
    limits = [(c.get("resources") or {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu")
        and lim.get("memory")
        and req.get("cpu") == lim.get("cpu")
        and req.get("memory") == lim.get("memory")
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def job(obj: dict[str, Any]) -> None:
    """A Job on create: its defaults, and the selector and template labels that tie its pods
    to it (the API server generates them from the uid, which the caller has set)."""
    meta = obj["metadata"]
    spec = obj.setdefault("spec", {})
    uid, name = meta["uid"], meta["name"]
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in rule.get("onPodConditions") or []:
            pattern.setdefault("status", "True")
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if not spec.get("manualSelector"):
        spec.setdefault("selector", {"matchLabels": {JOB_LABELS[0]: uid}})
        for key, value in (
            (JOB_LABELS[0], uid),
            (JOB_LABELS[1], name),
            (LEGACY_JOB_LABELS[0], uid),
            (LEGACY_JOB_LABELS[1], name),
        ):
            labels.setdefault(key, value)
    pod_spec(template.setdefault("spec", {}))


def namespace(obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}


def secret(obj: dict[str, Any]) -> None:
    """stringData is write-only: it is merged into data, base64-encoded."""
    import base64

    obj.setdefault("type", "Opaque")
    extra = obj.pop("stringData", None) or {}
    if extra:
        data = obj.setdefault("data", {})
        for key, value in extra.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def from_schema(obj: Any, schema: dict[str, Any]) -> Any:
    """Fill the `default`s a structural schema declares, where the object lacks them."""
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = clone(sub["default"])
            if key in obj:
                obj[key] = from_schema(obj[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in obj:
                if key not in props:
                    obj[key] = from_schema(obj[key], extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [from_schema(item, schema["items"]) for item in obj]
    return obj
