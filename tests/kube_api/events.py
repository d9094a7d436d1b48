"""Events, as the components record them: the controllers and the kubelet through the core/v1
recorder (counted when they repeat), the scheduler through events.k8s.io (eventTime, series).
Also the conversion between the two API versions of the one stored Event."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.kube_api.store import Store, StoreExists, now, now_micro

EVENTS = ("", "events")


def reference(obj: dict[str, Any], field_path: str | None = None) -> dict[str, Any]:
    meta = obj["metadata"]
    ref = {
        "kind": obj["kind"],
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "uid": meta.get("uid"),
        "apiVersion": obj["apiVersion"],
        "resourceVersion": meta.get("resourceVersion"),
    }
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v is not None}


class Recorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[tuple[Any, ...], tuple[str, str, str, str]] = {}
        self._lock = threading.Lock()

    def _key(self, namespace: str, name: str) -> tuple[str, str, str, str]:
        return ("", "events", namespace, name)

    def event(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        component: str,
        host: str | None = None,
        field_path: str | None = None,
    ) -> None:
        ref = reference(obj, field_path)
        namespace = ref.get("namespace") or "default"
        identity = (ref.get("uid"), type_, reason, message, component, field_path)
        with self._lock:
            known = self._seen.get(identity)
            if known is not None:
                stamp = now()

                def bump(event: dict[str, Any]) -> dict[str, Any]:
                    event["count"] = event.get("count", 1) + 1
                    event["lastTimestamp"] = stamp
                    return event

                if self.store.mutate(known, bump) is not None:
                    return
            source = {"component": component}
            if host:
                source["host"] = host
            stamp = now()
            name = _name(ref["name"])
            event: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": ref,
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "type": type_,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": host or "",
            }
            key = self._key(namespace, name)
            try:
                self.store.create(key, event)
            except StoreExists:
                return
            self._seen[identity] = key

    def new_event(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        controller: str,
        instance: str,
        action: str,
    ) -> None:
        """An event through events.k8s.io/v1, as the scheduler records (no first/last
        timestamps; a repeat becomes a series)."""
        ref = reference(obj)
        namespace = ref.get("namespace") or "default"
        identity = (ref.get("uid"), type_, reason, message, controller, action)
        with self._lock:
            known = self._seen.get(identity)
            if known is not None:
                stamp = now_micro()

                def bump(event: dict[str, Any]) -> dict[str, Any]:
                    series = event.get("series") or {"count": 1}
                    event["series"] = {"count": series["count"] + 1, "lastObservedTime": stamp}
                    return event

                if self.store.mutate(known, bump) is not None:
                    return
            name = _name(ref["name"])
            event: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": ref,
                "reason": reason,
                "message": message,
                "source": {},
                "firstTimestamp": None,
                "lastTimestamp": None,
                "type": type_,
                "eventTime": now_micro(),
                "action": action,
                "reportingComponent": controller,
                "reportingInstance": instance,
            }
            key = self._key(namespace, name)
            try:
                self.store.create(key, event)
            except StoreExists:
                return
            self._seen[identity] = key


def _name(owner: str) -> str:
    return f"{owner}.{time.time_ns():x}"


def to_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """A stored (core/v1) Event as events.k8s.io/v1 shows it."""
    out: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": event["metadata"],
        "eventTime": event.get("eventTime"),
        "reason": event.get("reason"),
        "regarding": event.get("involvedObject"),
        "note": event.get("message"),
        "type": event.get("type"),
        "reportingController": event.get("reportingComponent"),
        "reportingInstance": event.get("reportingInstance"),
    }
    for new, old in (
        ("action", "action"),
        ("related", "related"),
        ("series", "series"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ):
        if event.get(old) not in (None, {}):
            out[new] = event[old]
    return {k: v for k, v in out.items() if v is not None or k == "eventTime"}


def from_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event as the core/v1 Event that is stored."""
    out: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": event.get("metadata") or {},
        "involvedObject": event.get("regarding") or {},
        "reason": event.get("reason"),
        "message": event.get("note"),
        "type": event.get("type"),
        "eventTime": event.get("eventTime"),
        "reportingComponent": event.get("reportingController"),
        "reportingInstance": event.get("reportingInstance"),
        "source": event.get("deprecatedSource") or {},
        "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": event.get("deprecatedLastTimestamp"),
    }
    for new, old in (("action", "action"), ("related", "related"), ("series", "series")):
        if event.get(new) is not None:
            out[old] = event[new]
    if event.get("deprecatedCount") is not None:
        out["count"] = event["deprecatedCount"]
    return out
