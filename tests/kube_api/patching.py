"""Patches and server-side apply: JSON merge patch, strategic merge patch (lists of named items
merged by name), JSON patch, and apply with field ownership recorded in metadata.managedFields.

Ownership is tracked per leaf field; lists are atomic (owned and replaced as a whole), which is
what the structured-merge-diff library does for lists without merge keys.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import yaml

from tests.kube_api.errors import ApiError, apply_conflicts, bad_request
from tests.kube_api.store import clone, now

Path = tuple[str, ...]
SYSTEM_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


# -- patches -----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch for the common cases: maps merge, `null` deletes, lists whose
    items are all maps with a `name` merge by name (`$patch: delete` removes one), other lists
    are replaced; `$patch: replace` replaces a map; `$setElementOrder` and `$retainKeys` are
    accepted and ignored."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith(("$setElementOrder/", "$retainKeys", "$deleteFromPrimitiveList/")):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and _named_items(value) and _named_items(result.get(key)):
            result[key] = _merge_named(result[key], value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = clone(value)
    return result


def _named_items(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(i, dict) and "name" in i for i in value)
    )


def _merge_named(current: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[Any]:
    result = [clone(i) for i in current]
    for item in patch:
        index = next((i for i, c in enumerate(result) if c["name"] == item["name"]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        return jsonpatch.apply_patch(target, operations)
    except jsonpatch.InvalidJsonPatch as e:
        raise bad_request(
            f"the server rejected our request due to an error in our request: {e}"
        ) from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise ApiError(422, None, f"the server rejected our request due to an error: {e}") from None


# -- field ownership -----------------------------------------------------------------------


def leaf_paths(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every leaf of an object (maps are descended, anything else is a leaf)."""
    if isinstance(obj, dict) and obj:
        out: dict[Path, Any] = {}
        for key, value in obj.items():
            if not prefix and key in ("apiVersion", "kind"):
                continue
            if prefix == ("metadata",) and key in SYSTEM_METADATA | {"name", "namespace"}:
                continue
            out.update(leaf_paths(value, (*prefix, key)))
        return out
    return {prefix: obj} if prefix else {}


def owned_paths(obj: dict[str, Any], *, with_status: bool) -> set[Path]:
    paths = set(leaf_paths(obj))
    if not with_status:
        paths = {p for p in paths if p[0] != "status"}
    return paths


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def paths_of(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, value in fields.items():
        if key == ".":
            continue
        if not key.startswith("f:") or not value:
            out.add((*prefix, key[2:] if key.startswith("f:") else key))
            continue
        out |= paths_of(value, (*prefix, key[2:]))
    return out


def _entries(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not obj:
        return []
    return clone(obj.get("metadata", {}).get("managedFields") or [])


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    subresource: str | None = None,
) -> None:
    """An Update (POST, PUT, or a non-apply PATCH): `manager` takes the fields it set or
    changed, from whoever owned them."""
    with_status = subresource == "status"
    before = leaf_paths(old) if old else {}
    after = leaf_paths(new)
    changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
    changed = {p for p in changed if with_status == (p[0] == "status")}
    entries = _entries(old)
    for entry in entries:
        mine = paths_of(entry.get("fieldsV1", {})) - changed
        entry["fieldsV1"] = fields_v1({p for p in mine if p in after})
    _set_entry(entries, manager, "Update", api_version, changed, subresource, merge=True)
    new.setdefault("metadata", {})["managedFields"] = [e for e in entries if e["fieldsV1"]]


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    api_version: str,
    *,
    force: bool,
    with_status: bool,
) -> dict[str, Any]:
    """Server-side apply of `applied` by `manager` onto `live` (None: create). Raises a 409
    Conflict when another manager owns a field the applied config sets to a different value."""
    applied_leaves = {
        p: v for p, v in leaf_paths(applied).items() if with_status or p[0] != "status"
    }
    entries = _entries(live)
    base = clone(live) if live is not None else {}
    live_leaves = leaf_paths(base)
    conflicts: list[tuple[str, str, str]] = []
    for entry in entries:
        if entry["manager"] == manager and entry["operation"] == "Apply":
            continue
        theirs = paths_of(entry.get("fieldsV1", {}))
        for path in sorted(theirs & set(applied_leaves)):
            if live_leaves.get(path, _MISSING) != applied_leaves[path]:
                if force:
                    theirs.discard(path)
                else:
                    conflicts.append((entry["manager"], entry["apiVersion"], "." + ".".join(path)))
        entry["fieldsV1"] = fields_v1(theirs)
    if conflicts:
        raise apply_conflicts(conflicts)
    previous = next(
        (
            paths_of(e.get("fieldsV1", {}))
            for e in entries
            if e["manager"] == manager and e["operation"] == "Apply"
        ),
        set(),
    )
    others = set().union(
        *(
            paths_of(e.get("fieldsV1", {}))
            for e in entries
            if not (e["manager"] == manager and e["operation"] == "Apply")
        )
    )
    result = base
    for path in previous - set(applied_leaves) - others:
        _delete(result, path)
    for path, value in applied_leaves.items():
        _set(result, path, clone(value))
    for key in ("apiVersion", "kind"):
        if key in applied:
            result[key] = applied[key]
    meta = result.setdefault("metadata", {})
    for key in ("name", "namespace"):
        if key in applied.get("metadata", {}):
            meta[key] = applied["metadata"][key]
    _set_entry(entries, manager, "Apply", api_version, set(applied_leaves), None, merge=False)
    meta["managedFields"] = [e for e in entries if e["fieldsV1"]]
    return result


def _set_entry(
    entries: list[dict[str, Any]],
    manager: str,
    operation: str,
    api_version: str,
    paths: set[Path],
    subresource: str | None,
    *,
    merge: bool,
) -> None:
    for entry in entries:
        if (
            entry["manager"] == manager
            and entry["operation"] == operation
            and entry.get("subresource") == subresource
        ):
            if merge:
                paths = paths | paths_of(entry.get("fieldsV1", {}))
            entry.update(apiVersion=api_version, time=now(), fieldsV1=fields_v1(paths))
            return
    if not paths:
        return
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    entries.append(entry)


class _Missing:
    pass


_MISSING = _Missing()


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _delete(obj: dict[str, Any], path: Path) -> None:
    trail = [obj]
    node: Any = obj
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
        trail.append(node)
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, part in zip(reversed(trail[:-1]), reversed(path[:-1]), strict=True):
        if parent.get(part) == {}:
            parent.pop(part)


def parse_body(raw: bytes, content_type: str) -> Any:
    """The request body as data: JSON, or YAML for apply patches."""
    if not raw:
        return None
    if content_type == APPLY_PATCH:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding YAML: {e}") from None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad_request(f"couldn't get version/kind; json parse error: {e}") from None
