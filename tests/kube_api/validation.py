"""Validation of every body the server receives, in the order a real API server applies it:

1. decoding: a value of the wrong type in a built-in kind is a 400; unknown fields are found
   here (what the request's fieldValidation then makes of them is the registry's call);
2. validation proper, a 422 Invalid listing each field: the OpenAPI schema of the built-in kinds
   (the Kubernetes schemas kubernetes-validate ships) or the CRD's structural schema, object
   metadata (names, labels, annotations), and the semantic rules of pods and Jobs.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import referencing
from kubernetes.utils.quantity import parse_quantity

from tests.kube_api.discovery import Crd, ResourceType
from tests.kube_api.errors import ApiError, FieldError, bad_request, invalid

SCHEMA_VERSION = "1.33.0"
SCHEMA_DIR = f"kubernetes-json-schema/v{SCHEMA_VERSION}-local-strict"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
ENV_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', "
    "'-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or "
    "'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)
MAX_ANNOTATIONS_BYTES = 256 * 1024
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "storage")


def field_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def kind_in_message(rtype: ResourceType) -> str:
    return f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}'


# -- the built-in kinds' schemas -----------------------------------------------------------


def _schema_file(name: str) -> dict[str, Any]:
    root = resources.files("kubernetes_validate").joinpath(SCHEMA_DIR)
    return json.loads(root.joinpath(name).read_text())


@functools.cache
def _definitions() -> dict[str, Any]:
    return _schema_file("_definitions.json")


@functools.cache
def _registry() -> referencing.Registry:
    defs = referencing.Resource.from_contents(_definitions())
    return defs @ referencing.Registry()


@functools.cache
def _builtin(api_version: str, kind: str) -> tuple[dict[str, Any], jsonschema.Validator] | None:
    prefix = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = _schema_file(f"{kind.lower()}-{prefix}.json")
    except FileNotFoundError:
        return None
    registry = referencing.Resource.from_contents(schema) @ _registry()
    return schema, jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _object_meta() -> jsonschema.Validator:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "https://kubernetes.io/api/_definitions.json#/$defs/"
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    }
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _resolve(node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    ref = node.get("$ref")
    if not ref:
        return node, None
    name = ref.split("/$defs/", 1)[1]
    return _definitions()["$defs"][name], name.rsplit(".", 1)[-1]


def _go_type(node: dict[str, Any]) -> str:
    node, struct = _resolve(node)
    if struct:
        return struct if struct not in ("Quantity", "IntOrString") else f"resource.{struct}"
    types = node.get("type") or []
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    kind = types[0] if types else "object"
    if kind == "integer":
        return node.get("format", "int")
    if kind == "number":
        return "float64"
    if kind == "boolean":
        return "bool"
    if kind == "array":
        return "[]" + _go_type(node.get("items") or {})
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map[string]" + _go_type(node["additionalProperties"])
    return kind


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _decode_error(rtype: ResourceType, schema: dict[str, Any], error: Any) -> ApiError:
    """A value of the wrong type, as encoding/json reports it when the server decodes."""
    node, struct = schema, rtype.kind
    keys = [p for p in error.absolute_path if not isinstance(p, int)]
    for part in error.absolute_path:
        node, name = _resolve(node)
        if isinstance(part, int):
            node = node.get("items") or {}
        else:
            if name:
                struct = name
            props = node.get("properties") or {}
            node = props.get(part) or node.get("additionalProperties") or {}
    parent = struct
    resolved, _ = _resolve(node)
    if resolved.get("oneOf") and _go_type(node).startswith("resource."):
        detail = (
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            if _go_type(node) == "resource.Quantity"
            else f"json: cannot unmarshal {_json_type(error.instance)} into Go value of type "
            "intstr.IntOrString"
        )
    else:
        detail = (
            f"json: cannot unmarshal {_json_type(error.instance)} into Go struct field "
            f"{parent}.{'.'.join(str(k) for k in keys)} of type {_go_type(node)}"
        )
    return bad_request(f"{kind_in_message(rtype)}: {detail}")


def _extra_keys(error: Any) -> list[str]:
    props = error.schema.get("properties") or {}
    patterns = [re.compile(p) for p in error.schema.get("patternProperties") or {}]
    return [k for k in error.instance if k not in props and not any(p.search(k) for p in patterns)]


# -- CRD structural schemas ----------------------------------------------------------------


def structural(schema: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """A CRD's openAPIV3Schema as a JSON Schema that rejects what the API server prunes:
    objects with properties take no others unless x-kubernetes-preserve-unknown-fields."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("description", "default", "example", "format", "x-kubernetes-validations"):
            continue
        if key == "properties":
            out[key] = {k: structural(v, False) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = structural(value, False)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [structural(v, False) for v in value]
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        for key in ("apiVersion", "kind"):
            props.setdefault(key, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if top:
        props = out.setdefault("properties", {})
        props["metadata"] = {"type": "object"}
        props["status"] = {}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
    return out


def _crd_error(error: Any) -> FieldError | None:
    path = field_path(error.absolute_path)
    value = error.instance
    kind = error.validator
    spec = error.validator_value
    if kind == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        name = missing.group(1) if missing else ""
        return FieldError(
            field_path([*error.absolute_path, name]), "Required value", has_value=False
        )
    if kind == "type":
        wanted = spec if isinstance(spec, str) else next(t for t in spec if t != "null")
        actual = _openapi_type(value)
        return FieldError(
            path, "Invalid value", actual, f'{path} in body must be of type {wanted}: "{actual}"'
        )
    if kind == "enum":
        allowed = ", ".join(json.dumps(v) for v in spec)
        return FieldError(path, "Unsupported value", value, f"supported values: {allowed}")
    if kind == "pattern":
        return FieldError(path, "Invalid value", value, f"{path} in body should match '{spec}'")
    if kind == "minimum":
        return FieldError(
            path,
            "Invalid value",
            value,
            f"{path} in body should be greater than or equal to {spec}",
        )
    if kind == "maximum":
        return FieldError(
            path, "Invalid value", value, f"{path} in body should be less than or equal to {spec}"
        )
    if kind == "maxLength":
        return FieldError(path, "Too long", value, f"may not be more than {spec} bytes", False)
    if kind == "minLength":
        return FieldError(
            path, "Invalid value", value, f"{path} in body should be at least {spec} chars long"
        )
    if kind == "minItems":
        return FieldError(
            path, "Invalid value", len(value), f"{path} in body should have at least {spec} items"
        )
    if kind == "maxItems":
        return FieldError(path, "Too many", len(value), f"must have at most {spec} items", False)
    if kind == "additionalProperties":
        return None
    if kind in ("anyOf", "oneOf") and not isinstance(value, (dict, list)):
        return FieldError(
            path,
            "Invalid value",
            _openapi_type(value),
            f'{path} in body must be of type integer,string: "{_openapi_type(value)}"',
        )
    return FieldError(path, "Invalid value", value, error.message)


def _openapi_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


# -- the validator -------------------------------------------------------------------------


@dataclass(frozen=True)
class CrdSchema:
    raw: dict[str, Any]
    validator: jsonschema.Validator


_CRD_SCHEMAS: dict[tuple[int, str], CrdSchema] = {}


def _crd_schema(crd: Crd, version: str) -> CrdSchema:
    """The validator of one served version of a CRD (built once per loaded CRD)."""
    key = (id(crd), version)
    found = _CRD_SCHEMAS.get(key)
    if found is None:
        schema = crd.schemas[version]
        found = _CRD_SCHEMAS[key] = CrdSchema(
            schema, jsonschema.Draft4Validator(structural(schema))
        )
    return found


class Validator:
    """Validates bodies of the served kinds: built-ins by the Kubernetes schemas, custom
    resources by their CRDs' schemas."""

    def __init__(self, crds: list[Crd]) -> None:
        self.crds: dict[tuple[str, str, str], CrdSchema] = {}
        for crd in crds:
            for version in crd.schemas:
                self.crds[(crd.group, version, crd.plural)] = _crd_schema(crd, version)

    def crd_schema(self, rtype: ResourceType) -> dict[str, Any] | None:
        found = self.crds.get((rtype.group, rtype.version, rtype.plural))
        return found.raw if found else None

    def decode(self, rtype: ResourceType, obj: dict[str, Any]) -> list[str]:
        """Check a body decodes as `rtype`; return its unknown fields ("spec.foo")."""
        if not isinstance(obj, dict):
            raise bad_request(
                f"{kind_in_message(rtype)}: json: cannot unmarshal {_json_type(obj)} into Go "
                f"value of type struct"
            )
        unknown: list[str] = []
        if rtype.crd:
            crd = self.crds.get((rtype.group, rtype.version, rtype.plural))
            errors = list(crd.validator.iter_errors(obj)) if crd else []
        else:
            found = _builtin(rtype.api_version, rtype.kind)
            if found is None:
                return []
            schema, validator = found
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
            for error in errors:
                if error.validator in ("type", "oneOf"):
                    raise _decode_error(rtype, schema, error)
        for error in errors:
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                for key in _extra_keys(error):
                    unknown.append(field_path([*error.absolute_path, key]))
        for error in _object_meta().iter_errors(obj.get("metadata") or {}) if rtype.crd else []:
            if error.validator == "additionalProperties":
                for key in _extra_keys(error):
                    unknown.append(field_path(["metadata", *error.absolute_path, key]))
            elif error.validator in ("type", "oneOf"):
                raise bad_request(
                    f"{kind_in_message(rtype)}: json: cannot unmarshal "
                    f"{_json_type(error.instance)} into Go struct field ObjectMeta.metadata."
                    f"{'.'.join(str(p) for p in error.absolute_path)} of type "
                    f"{_go_type(error.schema)}"
                )
        return sorted(set(unknown))

    def validate(
        self, rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> None:
        """Raise 422 Invalid listing every field that fails validation."""
        errors: list[FieldError] = []
        errors += metadata_errors(rtype, obj.get("metadata") or {})
        if rtype.crd:
            crd = self.crds.get((rtype.group, rtype.version, rtype.plural))
            if crd is not None:
                body = {k: v for k, v in obj.items() if k != "status"}
                for error in sorted(
                    crd.validator.iter_errors(body), key=lambda e: list(e.absolute_path)
                ):
                    found = _crd_error(error)
                    if found is not None:
                        errors.append(found)
                if old is not None:
                    errors += _immutable_rules(crd.raw, obj, old)
        else:
            builtin = _builtin(rtype.api_version, rtype.kind)
            if builtin is not None:
                _, validator = builtin
                for error in validator.iter_errors(obj):
                    if error.validator in ("required", "enum"):
                        errors.append(_crd_error(error) or FieldError("", "Invalid value"))
            errors += semantic_errors(rtype, obj, old)
        if errors:
            meta = obj.get("metadata") or {}
            raise invalid(rtype.kind, rtype.group, meta.get("name", ""), errors)


def _immutable_rules(schema: dict[str, Any], new: Any, old: Any, path: tuple = ()) -> list:
    """The CEL rule `self == oldSelf` (immutable fields) of a CRD schema."""
    errors = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if rule.get("rule", "").replace(" ", "") == "self==oldSelf" and new != old:
            field = field_path(path)
            errors.append(
                FieldError(field, "Invalid value", _openapi_type(new), rule.get("message", ""))
            )
    if isinstance(new, dict) and isinstance(old, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in new and key in old and not (not path and key in ("metadata", "status")):
                errors += _immutable_rules(sub, new[key], old[key], (*path, key))
    return errors


# -- metadata ------------------------------------------------------------------------------


def metadata_errors(rtype: ResourceType, meta: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = meta.get("name")
    if not name:
        errors.append(
            FieldError(
                "metadata.name",
                "Required value",
                detail="name or generateName is required",
                has_value=False,
            )
        )
    elif rtype.storage_key == ("", "namespaces"):
        errors += _dns_label("metadata.name", name)
    else:
        errors += _dns_subdomain("metadata.name", name)
    errors += label_errors("metadata.labels", meta.get("labels") or {})
    annotations = meta.get("annotations") or {}
    for key in annotations:
        errors += _qualified_name("metadata.annotations", key)
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > MAX_ANNOTATIONS_BYTES:
        errors.append(
            FieldError(
                "metadata.annotations",
                "Too long",
                detail=f"must have at most {MAX_ANNOTATIONS_BYTES} bytes",
                has_value=False,
            )
        )
    return errors


def _dns_label(field: str, value: str) -> list[FieldError]:
    errors = []
    if len(value) > 63:
        errors.append(
            FieldError(field, "Invalid value", value, "must be no more than 63 characters")
        )
    if not DNS1123_LABEL.match(value):
        errors.append(FieldError(field, "Invalid value", value, LABEL_MSG))
    return errors


def _dns_subdomain(field: str, value: str) -> list[FieldError]:
    errors = []
    if len(value) > 253:
        errors.append(
            FieldError(field, "Invalid value", value, "must be no more than 253 characters")
        )
    if not DNS1123_SUBDOMAIN.match(value):
        errors.append(FieldError(field, "Invalid value", value, SUBDOMAIN_MSG))
    return errors


def _qualified_name(field: str, key: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    errors = []
    if "/" in key and not prefix:
        errors.append(FieldError(field, "Invalid value", key, "prefix part must be non-empty"))
    elif prefix:
        if len(prefix) > 253:
            errors.append(
                FieldError(
                    field, "Invalid value", key, "prefix part must be no more than 253 characters"
                )
            )
        if not DNS1123_SUBDOMAIN.match(prefix):
            errors.append(FieldError(field, "Invalid value", key, "prefix part " + SUBDOMAIN_MSG))
    if not name:
        errors.append(FieldError(field, "Invalid value", key, "name part must be non-empty"))
    else:
        if len(name) > 63:
            errors.append(
                FieldError(
                    field, "Invalid value", key, "name part must be no more than 63 characters"
                )
            )
        if not QUALIFIED_NAME.match(name):
            errors.append(FieldError(field, "Invalid value", key, NAME_PART_MSG))
    return errors


def label_errors(field: str, labels: dict[str, Any]) -> list[FieldError]:
    errors = []
    for key, value in labels.items():
        errors += _qualified_name(field, key)
        value = "" if value is None else str(value)
        if len(value) > 63:
            errors.append(
                FieldError(field, "Invalid value", value, "must be no more than 63 characters")
            )
        if not LABEL_VALUE.match(value):
            errors.append(FieldError(field, "Invalid value", value, LABEL_VALUE_MSG))
    return errors


# -- pods and Jobs ---------------------------------------------------------------------------


def semantic_errors(
    rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
) -> list[FieldError]:
    if rtype.storage_key == ("", "pods"):
        errors = pod_spec_errors("spec", obj.get("spec") or {})
        if old is not None:
            errors += _pod_update_errors(obj, old)
        return errors
    if rtype.storage_key == ("batch", "jobs"):
        return job_errors(obj, old)
    return []


def _quantity(value: Any) -> Decimal | None:
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


def container_errors(field: str, container: dict[str, Any], volumes: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = container.get("name")
    if not name:
        errors.append(FieldError(f"{field}.name", "Required value", has_value=False))
    else:
        errors += _dns_label(f"{field}.name", name)
    if not container.get("image"):
        errors.append(FieldError(f"{field}.image", "Required value", has_value=False))
    seen_env: set[str] = set()
    for i, env in enumerate(container.get("env") or []):
        env_field = f"{field}.env[{i}]"
        env_name = env.get("name", "")
        if not env_name:
            errors.append(FieldError(f"{env_field}.name", "Required value", has_value=False))
        elif not ENV_NAME.match(env_name):
            errors.append(FieldError(f"{env_field}.name", "Invalid value", env_name, ENV_NAME_MSG))
        seen_env.add(env_name)
        source = env.get("valueFrom")
        if source is not None:
            if env.get("value"):
                errors.append(
                    FieldError(
                        f"{env_field}.valueFrom",
                        "Invalid value",
                        "",
                        "may not be specified when `value` is not empty",
                    )
                )
            refs = [
                k
                for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
                if source.get(k)
            ]
            if len(refs) != 1:
                errors.append(
                    FieldError(
                        f"{env_field}.valueFrom",
                        "Invalid value",
                        "",
                        "may not have more than one field specified at a time"
                        if refs
                        else "must specify one of: `fieldRef`, `resourceFieldRef`, "
                        "`configMapKeyRef` or `secretKeyRef`",
                    )
                )
            for ref_kind in ("secretKeyRef", "configMapKeyRef"):
                ref = source.get(ref_kind)
                if ref is not None and not ref.get("key"):
                    errors.append(
                        FieldError(
                            f"{env_field}.valueFrom.{ref_kind}.key",
                            "Required value",
                            has_value=False,
                        )
                    )
    for i, mount in enumerate(container.get("volumeMounts") or []):
        if mount.get("name") not in volumes:
            errors.append(
                FieldError(
                    f"{field}.volumeMounts[{i}].name",
                    "Not found",
                    mount.get("name"),
                    has_value=True,
                )
            )
        if not mount.get("mountPath"):
            errors.append(
                FieldError(
                    f"{field}.volumeMounts[{i}].mountPath", "Required value", has_value=False
                )
            )
    resources_ = container.get("resources") or {}
    requests = resources_.get("requests") or {}
    limits = resources_.get("limits") or {}
    for kind, values in (("requests", requests), ("limits", limits)):
        for res, value in values.items():
            if _quantity(value) is None:
                errors.append(
                    FieldError(
                        f"{field}.resources.{kind}[{res}]",
                        "Invalid value",
                        value,
                        "quantities must match the regular expression "
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )
                )
    for res, value in requests.items():
        want, cap = _quantity(value), _quantity(limits.get(res)) if res in limits else None
        extended = res not in STANDARD_RESOURCES and not res.startswith("hugepages-")
        if extended:
            if res not in limits:
                errors.append(
                    FieldError(
                        f"{field}.resources.limits",
                        "Required value",
                        detail="Limit must be set for non overcommitable resources",
                        has_value=False,
                    )
                )
            elif want != cap:
                errors.append(
                    FieldError(
                        f"{field}.resources.requests[{res}]",
                        "Invalid value",
                        str(value),
                        f"must be equal to {res} limit of {limits[res]}",
                    )
                )
        elif want is not None and cap is not None and want > cap:
            errors.append(
                FieldError(
                    f"{field}.resources.requests",
                    "Invalid value",
                    str(value),
                    f"must be less than or equal to {res} limit of {limits[res]}",
                )
            )
    return errors


def pod_spec_errors(field: str, spec: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name", "")
        if name in volumes:
            errors.append(FieldError(f"{field}.volumes[{i}].name", "Duplicate value", name))
        volumes.add(name)
        errors += (
            _dns_label(f"{field}.volumes[{i}].name", name)
            if name
            else [FieldError(f"{field}.volumes[{i}].name", "Required value", has_value=False)]
        )
    containers = spec.get("containers") or []
    if not containers:
        errors.append(FieldError(f"{field}.containers", "Required value", has_value=False))
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            errors += container_errors(f"{field}.{group}[{i}]", container, volumes)
            name = container.get("name")
            if name in names:
                errors.append(FieldError(f"{field}.{group}[{i}].name", "Duplicate value", name))
            names.add(name)
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        errors.append(
            FieldError(
                f"{field}.restartPolicy",
                "Unsupported value",
                policy,
                'supported values: "Always", "OnFailure", "Never"',
            )
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errors.append(
            FieldError(
                f"{field}.terminationGracePeriodSeconds",
                "Invalid value",
                grace,
                "must be greater than or equal to 0",
            )
        )
    return errors


def _pod_update_errors(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    def mutable_removed(spec: dict[str, Any]) -> dict[str, Any]:
        spec = json.loads(json.dumps(spec))
        for group in ("containers", "initContainers"):
            for c in spec.get(group) or []:
                c.pop("image", None)
        spec.pop("activeDeadlineSeconds", None)
        spec.pop("tolerations", None)
        return spec

    if mutable_removed(new.get("spec") or {}) != mutable_removed(old.get("spec") or {}):
        return [
            FieldError(
                "spec",
                "Forbidden",
                detail="pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                "`spec.tolerations` (only additions to existing tolerations),"
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)",
                has_value=False,
            )
        ]
    return []


def _nonnegative(field: str, value: Any) -> list[FieldError]:
    if isinstance(value, int) and value < 0:
        return [FieldError(field, "Invalid value", value, "must be greater than or equal to 0")]
    return []


def job_errors(job: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = job.get("spec") or {}
    errors: list[FieldError] = []
    name = (job.get("metadata") or {}).get("name", "")
    if len(name) > 63:
        errors.append(
            FieldError(
                "spec.template.labels", "Invalid value", name, "must be no more than 63 characters"
            )
        )
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        errors += _nonnegative(f"spec.{key}", spec.get(key))
    mode = spec.get("completionMode", "NonIndexed")
    if mode not in ("NonIndexed", "Indexed"):
        errors.append(
            FieldError(
                "spec.completionMode",
                "Unsupported value",
                mode,
                'supported values: "NonIndexed", "Indexed"',
            )
        )
    if mode == "Indexed" and spec.get("completions") is None:
        errors.append(
            FieldError(
                "spec.completions",
                "Required value",
                detail="when completion mode is Indexed",
                has_value=False,
            )
        )
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    errors += pod_spec_errors("spec.template.spec", pod_spec)
    errors += label_errors(
        "spec.template.metadata.labels", (template.get("metadata") or {}).get("labels") or {}
    )
    policy = pod_spec.get("restartPolicy", "Always")
    if policy not in ("OnFailure", "Never"):
        errors.append(
            FieldError(
                "spec.template.spec.restartPolicy",
                "Unsupported value",
                policy,
                'supported values: "OnFailure", "Never"',
            )
        )
    failure_policy = spec.get("podFailurePolicy")
    if failure_policy is not None:
        if policy != "Never":
            errors.append(
                FieldError(
                    "spec.template.spec.restartPolicy",
                    "Invalid value",
                    policy,
                    'only "Never" is supported when podFailurePolicy is specified',
                )
            )
        errors += _pod_failure_policy_errors(failure_policy)
    selector = spec.get("selector")
    if selector is not None:
        from tests.kube_api.selectors import selector_matches

        labels = (template.get("metadata") or {}).get("labels") or {}
        if not selector_matches(selector, labels):
            errors.append(
                FieldError(
                    "spec.template.metadata.labels",
                    "Invalid value",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    if old is not None:
        old_spec = old.get("spec") or {}
        for key in ("template", "selector", "completions", "completionMode", "podFailurePolicy"):
            if key == "template" and old_spec.get("suspend"):
                continue
            if spec.get(key) != old_spec.get(key):
                errors.append(
                    FieldError(f"spec.{key}", "Invalid value", spec.get(key), "field is immutable")
                )
    return errors


def _pod_failure_policy_errors(policy: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    actions = ("Count", "FailIndex", "FailJob", "Ignore")
    for i, rule in enumerate(policy.get("rules") or []):
        field = f"spec.podFailurePolicy.rules[{i}]"
        action = rule.get("action")
        if action not in actions:
            errors.append(
                FieldError(
                    f"{field}.action",
                    "Unsupported value",
                    action,
                    "supported values: " + ", ".join(json.dumps(a) for a in actions),
                )
            )
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conditions is None):
            errors.append(
                FieldError(
                    field,
                    "Invalid value",
                    "specifying one of OnExitCodes and OnPodConditions is required",
                    has_value=False,
                )
            )
        if codes is not None:
            operator = codes.get("operator")
            if operator not in ("In", "NotIn"):
                errors.append(
                    FieldError(
                        f"{field}.onExitCodes.operator",
                        "Unsupported value",
                        operator,
                        'supported values: "In", "NotIn"',
                    )
                )
            values = codes.get("values") or []
            if not values:
                errors.append(
                    FieldError(
                        f"{field}.onExitCodes.values",
                        "Invalid value",
                        values,
                        "at least one value is required",
                    )
                )
            for j, value in enumerate(values):
                if operator == "In" and value == 0:
                    errors.append(
                        FieldError(
                            f"{field}.onExitCodes.values[{j}]",
                            "Invalid value",
                            0,
                            "must not be 0 for the In operator",
                        )
                    )
            if values != sorted(set(values)):
                errors.append(
                    FieldError(
                        f"{field}.onExitCodes.values", "Invalid value", values, "must be ordered"
                    )
                )
    return errors


def webhook_errors(rtype: ResourceType, obj: dict[str, Any], runtimes: set[str]) -> ApiError | None:
    """What the operators' validating webhooks refuse (the Training Operator's for PyTorchJob,
    Trainer's for TrainJob)."""
    name = (obj.get("metadata") or {}).get("name", "")
    spec = obj.get("spec") or {}
    errors: list[FieldError] = []
    if rtype.storage_key == ("kubeflow.org", "pytorchjobs"):
        hook = "validator.pytorchjob.training-operator.kubeflow.org"
        for rtype_name, replica in (spec.get("pytorchReplicaSpecs") or {}).items():
            field = f"spec.pytorchReplicaSpecs[{rtype_name}]"
            if rtype_name not in ("Master", "Worker"):
                errors.append(
                    FieldError(
                        field,
                        "Unsupported value",
                        rtype_name,
                        'supported values: "Master", "Worker"',
                    )
                )
            containers = (((replica or {}).get("template") or {}).get("spec") or {}).get(
                "containers"
            ) or []
            if not any(c.get("name") == "pytorch" for c in containers):
                errors.append(
                    FieldError(
                        f"{field}.template.spec.containers",
                        "Required value",
                        detail=f"There is no container named pytorch in {rtype_name}",
                        has_value=False,
                    )
                )
            for i, c in enumerate(containers):
                if not c.get("image"):
                    errors.append(
                        FieldError(
                            f"{field}.template.spec.containers[{i}].image",
                            "Required value",
                            has_value=False,
                        )
                    )
            if rtype_name == "Master" and (replica or {}).get("replicas", 1) != 1:
                errors.append(
                    FieldError(
                        f"{field}.replicas", "Forbidden", detail="must be 1", has_value=False
                    )
                )
    elif rtype.storage_key == ("trainer.kubeflow.org", "trainjobs"):
        hook = "validator.trainjob.trainer.kubeflow.org"
        ref = spec.get("runtimeRef") or {}
        if ref.get("name") and ref.get("name") not in runtimes:
            kind = ref.get("kind", "ClusterTrainingRuntime")
            errors.append(
                FieldError(
                    "spec.runtimeRef",
                    "Invalid value",
                    ref,
                    f'{kind}.trainer.kubeflow.org "{ref["name"]}" not found',
                )
            )
    else:
        return None
    if not errors:
        return None
    error = invalid(rtype.kind, rtype.group, name, errors)
    error.message = f'admission webhook "{hook}" denied the request: {error.message}'
    return error
