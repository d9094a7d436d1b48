"""What the API server does with a request once it is authorised: conversion between served
versions, defaulting, validation, field validation (Strict/Warn/Ignore), field ownership, the
status subresource, optimistic concurrency, graceful deletion, finalizers and the cascading
policies (Orphan/Background/Foreground). Controllers write through it too."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.kube_api import defaults, patching
from tests.kube_api.discovery import Catalog, ResourceType
from tests.kube_api.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    not_found,
    unsupported_patch,
)
from tests.kube_api.events import from_events_v1, to_events_v1
from tests.kube_api.selectors import (
    matches_fields,
    matches_labels,
    parse_field_selector,
    parse_label_selector,
)
from tests.kube_api.store import (
    Key,
    Store,
    StoreConflict,
    StoreExists,
    StoreNotFound,
    clone,
    now,
)
from tests.kube_api.validation import Validator, webhook_errors

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""What the API server draws generateName suffixes from (no vowels, no look-alikes)."""
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
JOB_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
    "to remove them or set propagationPolicy=Orphan to suppress this warning"
)
DEFAULT_MANAGER = "OpenAPI-Generator"
GENERATION = frozenset({("batch", "jobs")})


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_ALPHABET) for _ in range(n))


def manager_from_agent(user_agent: str) -> str:
    """The field manager of a request that names none: its User-Agent up to the first `/`."""
    return (user_agent or DEFAULT_MANAGER).split("/", 1)[0][:128] or DEFAULT_MANAGER


@dataclass
class Written:
    """What a write returns: the object (or a Status), its HTTP code, and Warning headers."""

    body: dict[str, Any]
    code: int = 200
    warnings: list[str] = field(default_factory=list)


class Registry:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        validator: Validator,
        *,
        field_validation: str = "Warn",
        runtimes: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.validator = validator
        self.field_validation = field_validation
        self.runtimes = runtimes
        self.storage_types = catalog.storage_types()

    # -- keys and versions -----------------------------------------------------------------

    def key(self, rtype: ResourceType, namespace: str | None, name: str) -> Key:
        group, plural = rtype.storage_key
        return (group, plural, (namespace or "") if rtype.namespaced else "", name)

    def storage_type(self, rtype: ResourceType) -> ResourceType:
        return self.storage_types[rtype.storage_key]

    def present(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A stored object as `rtype`'s group version shows it."""
        if rtype.group == "events.k8s.io":
            return to_events_v1(obj)
        if obj.get("apiVersion") != rtype.api_version:
            obj = {**obj, "apiVersion": rtype.api_version}
        return obj

    def accept(self, rtype: ResourceType, body: dict[str, Any]) -> dict[str, Any]:
        """A body in `rtype`'s group version as it is stored."""
        if rtype.group == "events.k8s.io":
            return from_events_v1(body)
        storage = self.storage_type(rtype)
        return {**body, "apiVersion": storage.api_version}

    # -- reads -----------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(self.key(rtype, namespace, name))
        if obj is None:
            raise not_found(rtype.plural, rtype.group, name)
        return self.present(rtype, obj)

    def selectors(
        self, rtype: ResourceType, label_selector: str | None, field_selector: str | None
    ) -> Callable[[dict[str, Any]], bool]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(
            field_selector, rtype.storage_key, rtype.crd, rtype.group == "events.k8s.io"
        )

        def matches(obj: dict[str, Any]) -> bool:
            return matches_labels(labels, obj["metadata"].get("labels")) and matches_fields(
                fields, obj
            )

        return matches

    def listing(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> dict[str, Any]:
        matches = self.selectors(rtype, label_selector, field_selector)
        group, plural = rtype.storage_key
        items, rv = self.store.objects(group, plural, namespace if rtype.namespaced else None)
        items = [i for i in items if matches(i)]
        start = 0
        if continue_:
            try:
                token = json.loads(base64.b64decode(continue_))
                start, rv = int(token["start"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request(f"invalid continue token: {continue_!r}") from None
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        page = items[start:]
        if limit and limit > 0 and len(page) > limit:
            page = page[:limit]
            token = json.dumps({"start": start + limit, "rv": rv}).encode()
            meta["continue"] = base64.b64encode(token).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        shown = [self.present(rtype, i) for i in page]
        if not rtype.crd:
            shown = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in shown]
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": shown,
        }

    # -- create ----------------------------------------------------------------------------

    def _check_identity(
        self, rtype: ResourceType, body: Any, namespace: str | None
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                "json: cannot unmarshal array into Go value of type struct"
            )
        body = clone(body)
        api_version = body.setdefault("apiVersion", rtype.api_version)
        kind = body.setdefault("kind", rtype.kind)
        if api_version != rtype.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version})"
            )
        if kind != rtype.kind:
            raise bad_request(
                f'{kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta"
            )
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return body

    def _check_namespace(self, rtype: ResourceType, namespace: str | None) -> None:
        if not rtype.namespaced:
            return
        ns = self.store.get(("", "namespaces", "", namespace or ""))
        if ns is None:
            raise not_found("namespaces", "", namespace or "")
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rtype.plural} "{ns["metadata"]["name"]}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": rtype.plural},
            )

    def _field_validation(
        self, rtype: ResourceType, body: dict[str, Any], directive: str | None
    ) -> list[str]:
        """Decode `body` and act on its unknown fields: Strict refuses them, Warn drops them with
        a warning, Ignore drops them. Returns the warnings."""
        unknown = self.validator.decode(rtype, body)
        if not unknown:
            return []
        directive = directive or self.field_validation
        if directive == "Strict":
            listed = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                f"strict decoding error: {listed}"
            )
        for path in unknown:
            _drop(body, path)
        if directive == "Ignore":
            return []
        return [f'unknown field "{f}"' for f in unknown]

    def _prepare(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """Defaulting, by kind."""
        storage = rtype.storage_key
        if storage == ("", "pods"):
            defaults.pod(obj)
        elif storage == ("batch", "jobs"):
            defaults.job(obj)
        elif storage == ("", "secrets"):
            defaults.secret(obj)
        schema = self.validator.crd_schema(rtype)
        if schema is not None:
            for part in ("spec",):
                if part in obj and "properties" in schema and part in schema["properties"]:
                    defaults.from_schema(obj[part], schema["properties"][part])

    def _validate(
        self, rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> None:
        self.validator.validate(rtype, obj, old)
        denied = webhook_errors(rtype, obj, set(self.runtimes))
        if denied is not None:
            raise denied

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        manager: str,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> Written:
        body = self._check_identity(rtype, body, namespace)
        self._check_namespace(rtype, namespace)
        warnings = self._field_validation(rtype, body, field_validation)
        obj = self.accept(rtype, body)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        for system in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta.pop(system, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rtype.has_status or rtype.storage_key in (("", "pods"), ("batch", "jobs")):
            obj.pop("status", None)
        if rtype.storage_key in GENERATION or rtype.crd:
            meta["generation"] = 1
        self._prepare(rtype, obj)
        if rtype.storage_key == ("", "namespaces"):
            defaults.namespace(obj)
        self._validate(self.storage_type(rtype), obj)
        patching.record_update(None, obj, manager, rtype.api_version)
        if dry_run:
            if self.store.get(self.key(rtype, namespace, meta["name"])) is not None:
                raise already_exists(rtype.plural, rtype.group, meta["name"])
            return Written(self.present(rtype, obj), 201, warnings)
        try:
            stored = self.store.create(self.key(rtype, namespace, meta["name"]), obj)
        except StoreExists:
            raise already_exists(rtype.plural, rtype.group, meta["name"]) from None
        return Written(self.present(rtype, stored), 201, warnings)

    # -- update ----------------------------------------------------------------------------

    def _merge_subresource(
        self,
        rtype: ResourceType,
        new: dict[str, Any],
        current: dict[str, Any],
        subresource: str | None,
    ) -> dict[str, Any]:
        """A write to the main resource keeps the stored status; one to /status keeps all else."""
        with_status_sub = rtype.has_status or rtype.storage_key == ("", "pods")
        if subresource == "status":
            merged = clone(current)
            if "status" in new:
                merged["status"] = new["status"]
            return merged
        if with_status_sub:
            new = clone(new)
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        return new

    def _carry_metadata(self, new: dict[str, Any], current: dict[str, Any]) -> None:
        meta, old = new.setdefault("metadata", {}), current["metadata"]
        for system in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if system in old:
                meta[system] = old[system]
            else:
                meta.pop(system, None)
        if old.get("deletionTimestamp"):
            # A terminating object may lose finalizers, never gain them.
            meta["finalizers"] = [
                f for f in meta.get("finalizers") or [] if f in old.get("finalizers", [])
            ]

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        manager: str,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> Written:
        body = self._check_identity(rtype, body, namespace)
        body_name = body["metadata"].get("name")
        if body_name and body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        body["metadata"]["name"] = name
        key = self.key(rtype, namespace, name)
        with self.store.lock:  # read-modify-write: no controller write in between
            current = self.store.get(key)
            if current is None:
                raise not_found(rtype.plural, rtype.group, name)
            expect = body["metadata"].get("resourceVersion")
            if expect and expect != current["metadata"]["resourceVersion"]:
                raise conflict(rtype.plural, rtype.group, name)
            warnings = self._field_validation(rtype, body, field_validation)
            new = self._finish_update(
                rtype, self.accept(rtype, body), current, subresource, manager
            )
            if dry_run:
                return Written(self.present(rtype, new), 200, warnings)
            try:
                stored = self.store.replace(key, new, expect_rv=expect)
            except StoreConflict:
                raise conflict(rtype.plural, rtype.group, name) from None
            except StoreNotFound:
                raise not_found(rtype.plural, rtype.group, name) from None
            stored = self._maybe_finalize(key, stored)
        return Written(self.present(rtype, stored), 200, warnings)

    def _finish_update(
        self,
        rtype: ResourceType,
        new: dict[str, Any],
        current: dict[str, Any],
        subresource: str | None,
        manager: str,
        *,
        apply: bool = False,
    ) -> dict[str, Any]:
        new = self._merge_subresource(rtype, new, current, subresource)
        self._carry_metadata(new, current)
        if subresource != "status":
            if rtype.storage_key == ("batch", "jobs"):
                # The generated selector and labels stay as they were.
                spec = new.setdefault("spec", {})
                old_spec = current.get("spec") or {}
                if "selector" not in spec and "selector" in old_spec:
                    spec["selector"] = old_spec["selector"]
                labels = (
                    spec.setdefault("template", {})
                    .setdefault("metadata", {})
                    .setdefault("labels", {})
                )
                old_labels = ((old_spec.get("template") or {}).get("metadata") or {}).get(
                    "labels"
                ) or {}
                for k in (*defaults.JOB_LABELS, *defaults.LEGACY_JOB_LABELS):
                    if k in old_labels:
                        labels.setdefault(k, old_labels[k])
                defaults.job(new)
            elif rtype.storage_key == ("", "pods"):
                status = new.get("status")
                defaults.pod(new)
                if status is not None:
                    new["status"] = status
            else:
                self._prepare(rtype, new)
            self._validate(self.storage_type(rtype), new, current)
        if not apply:
            patching.record_update(current, new, manager, rtype.api_version, subresource)
        return new

    # -- patch -----------------------------------------------------------------------------

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        manager: str | None,
        force: bool = False,
        dry_run: bool = False,
        field_validation: str | None = None,
        may_create: Callable[[], None] | None = None,
    ) -> Written:
        if content_type == patching.APPLY_PATCH:
            return self._apply(
                rtype, namespace, name, patch, subresource, manager, force, dry_run, may_create
            )
        if content_type == patching.STRATEGIC_PATCH and rtype.crd:
            raise unsupported_patch(
                [patching.JSON_PATCH, patching.MERGE_PATCH, patching.APPLY_PATCH]
            )
        if content_type not in (
            patching.JSON_PATCH,
            patching.MERGE_PATCH,
            patching.STRATEGIC_PATCH,
        ):
            raise unsupported_patch(
                [patching.JSON_PATCH, patching.MERGE_PATCH, patching.APPLY_PATCH]
                + ([] if rtype.crd else [patching.STRATEGIC_PATCH])
            )
        key = self.key(rtype, namespace, name)
        with self.store.lock:  # read-modify-write: no controller write in between
            current = self.store.get(key)
            if current is None:
                raise not_found(rtype.plural, rtype.group, name)
            shown = self.present(rtype, current)
            if content_type == patching.JSON_PATCH:
                patched = patching.json_patch(shown, patch)
            elif content_type == patching.MERGE_PATCH:
                patched = patching.merge_patch(shown, patch)
            else:
                patched = patching.strategic_merge_patch(shown, patch)
            if not isinstance(patched, dict):
                raise bad_request("the patch does not result in an object")
            expect = (patched.get("metadata") or {}).get("resourceVersion")
            if expect and expect != current["metadata"]["resourceVersion"]:
                raise conflict(rtype.plural, rtype.group, name)
            body = self._check_identity(rtype, patched, namespace)
            warnings = self._field_validation(rtype, body, field_validation)
            new = self._finish_update(
                rtype, self.accept(rtype, body), current, subresource, manager or DEFAULT_MANAGER
            )
            if dry_run:
                return Written(self.present(rtype, new), 200, warnings)
            stored = self.store.replace(key, new)
            stored = self._maybe_finalize(key, stored)
        return Written(self.present(rtype, stored), 200, warnings)

    def _apply(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        applied: Any,
        subresource: str | None,
        manager: str | None,
        force: bool,
        dry_run: bool,
        may_create: Callable[[], None] | None,
    ) -> Written:
        if not manager:
            raise bad_request("fieldManager is required for apply requests")
        body = self._check_identity(rtype, applied, namespace)
        body_name = body["metadata"].get("name")
        if body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        unknown = self.validator.decode(rtype, body)
        if unknown:
            gv = rtype.api_version if rtype.group else f"/{rtype.version}"
            where = f"{namespace}/{name}" if rtype.namespaced else name
            raise ApiError(
                500,
                None,
                f"failed to create typed patch object ({where}; {gv}, Kind={rtype.kind}): "
                f".{unknown[0]}: field not declared in schema",
            )
        key = self.key(rtype, namespace, name)
        with self.store.lock:  # read-modify-write: no controller write in between
            current = self.store.get(key)
            if current is None:
                if subresource:
                    raise not_found(rtype.plural, rtype.group, name)
                if may_create is not None:
                    may_create()
                created = patching.apply(
                    None,
                    self.accept(rtype, body),
                    manager,
                    rtype.api_version,
                    force=force,
                    with_status=False,
                )
                managed = created["metadata"].pop("managedFields", [])
                written = self.create(
                    rtype, namespace, self.present(rtype, created), manager=manager, dry_run=True
                )
                obj = self.accept(rtype, written.body)
                obj["metadata"]["managedFields"] = managed
                if dry_run:
                    return Written(self.present(rtype, obj), 201)
                try:
                    stored = self.store.create(key, obj)
                except StoreExists:
                    raise already_exists(rtype.plural, rtype.group, name) from None
                return Written(self.present(rtype, stored), 201)
            shown = self.present(rtype, current)
            merged = patching.apply(
                shown,
                body,
                manager,
                rtype.api_version,
                force=force,
                with_status=subresource == "status",
            )
            new = self._finish_update(
                rtype, self.accept(rtype, merged), current, subresource, manager, apply=True
            )
            if dry_run:
                return Written(self.present(rtype, new), 200)
            stored = self.store.replace(key, new)
            stored = self._maybe_finalize(key, stored)
        return Written(self.present(rtype, stored), 200)

    # -- delete ----------------------------------------------------------------------------

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> Written:
        options = options or {}
        key = self.key(rtype, namespace, name)
        with self.store.lock:  # read-modify-write: no controller write in between
            current = self.store.get(key)
            if current is None:
                raise not_found(rtype.plural, rtype.group, name)
            pre = options.get("preconditions") or {}
            meta = current["metadata"]
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                    f"meta: {meta['uid']}",
                    {"name": name, "group": rtype.group, "kind": rtype.plural}
                    if rtype.group
                    else {"name": name, "kind": rtype.plural},
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(rtype.plural, rtype.group, name)
            warnings: list[str] = []
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            if policy is None:
                if rtype.storage_key == ("batch", "jobs"):
                    policy = "Orphan"
                    warnings.append(JOB_ORPHAN_WARNING)
                else:
                    policy = "Background"
            if policy not in ("Orphan", "Background", "Foreground"):
                raise ApiError(
                    422,
                    "Invalid",
                    f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                    f'value: "{policy}": supported values: "Foreground", "Background", "Orphan", '
                    '"nil"',
                )
            if dry_run:
                return Written(self.present(rtype, current), 200, warnings)
            result = self.delete_object(key, current, policy, options.get("gracePeriodSeconds"))
        if result is None:
            if rtype.crd:
                return Written(self.present(rtype, current), 200, warnings)
            details: dict[str, Any] = {"name": name}
            if rtype.group:
                details["group"] = rtype.group
            details.update(kind=rtype.plural, uid=meta["uid"])
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
            return Written(body, 200, warnings)
        return Written(self.present(rtype, result), 200, warnings)

    def delete_object(
        self, key: Key, current: dict[str, Any], policy: str, grace: int | None = None
    ) -> dict[str, Any] | None:
        """Delete a stored object: returns it if it lives on (being terminated), None if it is
        gone."""
        meta = current["metadata"]
        if key[:2] == ("", "pods"):
            period = grace
            if period is None:
                period = (current.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            phase = (current.get("status") or {}).get("phase")
            if not (current.get("spec") or {}).get("nodeName") or phase in ("Succeeded", "Failed"):
                period = 0
            if period > 0:

                def terminate(pod: dict[str, Any]) -> dict[str, Any]:
                    m = pod["metadata"]
                    known = m.get("deletionGracePeriodSeconds")
                    if known is None or period < known:
                        m["deletionTimestamp"] = now()
                        m["deletionGracePeriodSeconds"] = period
                    return pod

                return self.store.mutate(key, terminate)
        if key[:2] == ("", "namespaces"):

            def terminating(ns: dict[str, Any]) -> dict[str, Any]:
                ns["metadata"].setdefault("deletionTimestamp", now())
                ns.setdefault("status", {})["phase"] = "Terminating"
                return ns

            return self.store.mutate(key, terminating)
        if policy == "Orphan":
            self._orphan(meta["uid"])
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and self.dependents(meta["uid"]):
            finalizers = [*finalizers, FOREGROUND] if FOREGROUND not in finalizers else finalizers
        if finalizers:

            def mark(obj: dict[str, Any]) -> dict[str, Any]:
                obj["metadata"].setdefault("deletionTimestamp", now())
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                obj["metadata"]["finalizers"] = finalizers
                return obj

            return self.store.mutate(key, mark)
        with contextlib.suppress(StoreNotFound):
            self.store.remove(key)
        return None

    def _maybe_finalize(self, key: Key, stored: dict[str, Any]) -> dict[str, Any]:
        """An object being deleted whose last finalizer is gone is deleted (a pod only once its
        kubelet is done with it: grace period 0)."""
        meta = stored["metadata"]
        done = key[:2] != ("", "pods") or meta.get("deletionGracePeriodSeconds") == 0
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and done:
            with contextlib.suppress(StoreNotFound):
                self.store.remove(key)
        return stored

    def dependents(self, uid: str) -> list[tuple[Key, dict[str, Any]]]:
        found = []
        with self.store.lock:
            for key in self.store.key_list():
                obj = self.store.get(key)
                if obj is None:
                    continue
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    found.append((key, obj))
        return found

    def _orphan(self, uid: str) -> None:
        for key, _ in self.dependents(uid):

            def release(obj: dict[str, Any]) -> dict[str, Any]:
                refs = [
                    r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ]
                if refs:
                    obj["metadata"]["ownerReferences"] = refs
                else:
                    obj["metadata"].pop("ownerReferences", None)
                return obj

            self.store.mutate(key, release)

    def delete_collection(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None,
        field_selector: str | None,
        options: dict[str, Any] | None,
    ) -> Written:
        listed = self.listing(
            rtype, namespace, label_selector=label_selector, field_selector=field_selector
        )
        deleted = []
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                written = self.delete(rtype, meta.get("namespace"), meta["name"], options)
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(written.body if written.body.get("kind") != "Status" else item)
        listed["items"] = deleted
        return Written(listed, 200)

    # -- internal writes (controllers) -----------------------------------------------------

    def type_of(self, group: str, plural: str) -> ResourceType:
        return self.storage_types[(group, plural)]

    def create_owned(
        self, group: str, plural: str, body: dict[str, Any], manager: str
    ) -> dict[str, Any]:
        """Create an object as a controller does: through defaulting and validation."""
        rtype = self.type_of(group, plural)
        written = self.create(
            rtype,
            body["metadata"].get("namespace"),
            body,
            manager=manager,
            field_validation="Strict",
        )
        return self.accept(rtype, written.body)

    def remove_finalizer(self, key: Key, name: str) -> None:
        def drop(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["finalizers"] = [
                f for f in obj["metadata"].get("finalizers") or [] if f != name
            ]
            if not obj["metadata"]["finalizers"]:
                obj["metadata"].pop("finalizers")
            return obj

        stored = self.store.mutate(key, drop)
        if stored is not None:
            self._maybe_finalize(key, stored)


def _drop(body: dict[str, Any], path: str) -> None:
    """Remove `spec.foo` / `spec.items[2].bar` from a body."""
    node: Any = body
    parts: list[Any] = []
    for piece in path.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        parts.append(name)
        parts.extend(int(i) for i in indexes)
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)
