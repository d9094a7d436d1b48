"""The object store: what etcd is to an API server. Objects by (group, plural, namespace, name),
one resourceVersion counter for all of them, and a bounded history of changes for watches."""

from __future__ import annotations

import copy
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str, str, str]
"""(group, plural, namespace, name); namespace is "" for cluster-scoped objects."""

DEFAULT_HISTORY = 2000


class StoreNotFound(Exception):
    pass


class StoreExists(Exception):
    pass


class StoreConflict(Exception):
    pass


class TooOld(Exception):
    def __init__(self, rv: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {rv} ({oldest})")
        self.rv = rv
        self.oldest = oldest


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: Key
    obj: dict[str, Any]
    """A snapshot; never modified after it is recorded."""
    prev: dict[str, Any] | None = None
    """The object before the change (None for ADDED)."""


def now() -> str:
    """A Kubernetes timestamp (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def clone(obj: Any) -> Any:
    return copy.deepcopy(obj)


class Store:
    """Thread-safe. Every read returns a copy; every write bumps the resourceVersion (a write that
    changes nothing is a no-op, as in a real API server) and is kept for watchers."""

    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rv = 1
        self._history: deque[Change] = deque()
        self._history_limit = history
        self._oldest = 1
        """Every change after this resourceVersion is still in the history."""

    @property
    def rv(self) -> int:
        with self._lock:
            return self._rv

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- reads ------------------------------------------------------------------------

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get(key)
            return clone(obj) if obj is not None else None

    def objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            items = [
                clone(obj)
                for (g, p, ns, _), obj in sorted(self._objects.items())
                if g == group and p == plural and (namespace is None or ns == namespace)
            ]
            return items, self._rv

    def key_list(self, group: str | None = None, plural: str | None = None) -> list[Key]:
        with self._lock:
            return [
                k
                for k in self._objects
                if (group is None or k[0] == group) and (plural is None or k[1] == plural)
            ]

    def find_uid(self, uid: str) -> tuple[Key, dict[str, Any]] | None:
        with self._lock:
            for key, obj in self._objects.items():
                if obj["metadata"].get("uid") == uid:
                    return key, clone(obj)
            return None

    def uids(self) -> set[str]:
        with self._lock:
            return {obj["metadata"]["uid"] for obj in self._objects.values()}

    # -- writes -----------------------------------------------------------------------

    def create(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if key in self._objects:
                raise StoreExists(key)
            obj = clone(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            self._write(key, obj, "ADDED", None)
            return clone(obj)

    def replace(
        self, key: Key, obj: dict[str, Any], expect_rv: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise StoreNotFound(key)
            if expect_rv and current["metadata"]["resourceVersion"] != expect_rv:
                raise StoreConflict(key)
            return self._update(key, current, clone(obj))

    def mutate(
        self, key: Key, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Read-modify-write under the lock: `change` gets a copy and returns the new object
        (or None to leave it). Returns what is stored after, or None if the key is absent."""
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                return None
            updated = change(clone(current))
            if updated is None:
                return clone(current)
            return self._update(key, current, updated)

    def remove(self, key: Key) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.pop(key, None)
            if obj is None:
                raise StoreNotFound(key)
            prev = obj
            obj = clone(obj)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._record(Change(self._rv, "DELETED", key, obj, prev))
            return clone(obj)

    def _update(self, key: Key, current: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        old_meta = current["metadata"]
        for field in ("uid", "creationTimestamp"):
            meta[field] = old_meta[field]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "generation" in old_meta:
            meta["generation"] = old_meta["generation"]
            if _spec_of(obj) != _spec_of(current):
                meta["generation"] = old_meta["generation"] + 1
        if obj == current:
            return clone(current)
        self._write(key, obj, "MODIFIED", current)
        return clone(obj)

    def _write(self, key: Key, obj: dict[str, Any], kind: str, prev: dict[str, Any] | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key] = obj
        self._record(Change(self._rv, kind, key, clone(obj), prev))

    def _record(self, change: Change) -> None:
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._oldest = self._history.popleft().rv
        self._changed.notify_all()

    # -- watch ------------------------------------------------------------------------

    def changes_after(self, rv: int, group: str, plural: str) -> tuple[list[Change], int]:
        """Changes to (group, plural) after `rv`, and the resourceVersion they bring the
        watcher to; TooOld if some of them are forgotten."""
        with self._lock:
            if rv < self._oldest:
                raise TooOld(rv, self._oldest)
            changes = [
                c for c in self._history if c.rv > rv and c.key[0] == group and c.key[1] == plural
            ]
            return changes, self._rv

    def wait(self, rv: int, timeout: float) -> int:
        """Block until something changes after `rv` (or `timeout` passes); the current rv."""
        with self._changed:
            if self._rv <= rv:
                self._changed.wait(timeout)
            return self._rv

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def compact(self) -> None:
        """Forget the whole history, as etcd compaction does: a watch from any resourceVersion
        before now gets 410 Gone."""
        with self._lock:
            self._history.clear()
            self._oldest = self._rv
            self._changed.notify_all()


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
