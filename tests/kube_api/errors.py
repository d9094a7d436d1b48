"""Status objects, as the API server returns them for every failure, and the exception that
carries one from wherever the failure is found to the HTTP layer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

NOT_FOUND_PATH = "the server could not find the requested resource"


def status_body(
    code: int, reason: str | None, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """A request that fails with a Status (code, reason, message, details)."""

    def __init__(
        self,
        code: int,
        reason: str | None,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def qualified(resource: str, group: str) -> str:
    """`jobs.batch`, `pods`: how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(name: str | None, group: str, kind: str, **more: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details.update(more)
    return details


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        _details(name, group, resource),
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", NOT_FOUND_PATH, {})


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": the object '
        "has been modified; please apply your changes to the latest version and try again",
        _details(name, group, resource),
    )


def apply_conflicts(conflicts: list[tuple[str, str, str]]) -> ApiError:
    """Server-side apply conflicts: (manager, apiVersion, field path) each."""
    count = len(conflicts)
    noun = "conflict" if count == 1 else "conflicts"
    lines = [f'conflict with "{m}" using {v}: {f}' for m, v, f in conflicts]
    message = f"Apply failed with {count} {noun}: " + (
        lines[0] if count == 1 else "\n" + "\n".join(f"- {line}" for line in lines)
    )
    causes = [
        {"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}', "field": f}
        for m, v, f in conflicts
    ]
    return ApiError(409, "Conflict", message, {"causes": causes})


VALUED = ("Invalid value", "Unsupported value", "Duplicate value", "Not found", "Too many")


@dataclass(frozen=True)
class FieldError:
    """One entry of a 422's details.causes (k8s.io/apimachinery field.Error)."""

    field: str
    type: str  # "Invalid value", "Required value", "Unsupported value", "Forbidden", ...
    value: Any = None
    detail: str = ""
    has_value: bool = True

    REASONS = {
        "Invalid value": "FieldValueInvalid",
        "Required value": "FieldValueRequired",
        "Unsupported value": "FieldValueNotSupported",
        "Forbidden": "FieldValueForbidden",
        "Too long": "FieldValueTooLong",
        "Duplicate value": "FieldValueDuplicate",
        "Not found": "FieldValueNotFound",
    }

    @property
    def body(self) -> str:
        """The error without its field, as the cause's message."""
        text = self.type
        if self.has_value and self.type in VALUED:
            text += f": {format_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"

    @property
    def cause(self) -> dict[str, str]:
        return {
            "reason": self.REASONS.get(self.type, "FieldValueInvalid"),
            "message": self.body,
            "field": self.field,
        }


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    errs = [str(e) for e in errors]
    listed = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified(kind, group)} "{name}" is invalid: {listed}',
        _details(name, group, kind, causes=[e.cause for e in errors]),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(
    user: str,
    verb: str,
    resource: str,
    subresource: str,
    group: str,
    namespace: str | None,
    name: str | None,
) -> ApiError:
    """The RBAC authorizer's denial, worded as the API server words it."""
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    full = f"{resource}/{subresource}" if subresource else resource
    reason = f'User "{user}" cannot {verb} resource "{full}" in API group "{group}" {scope}'
    subject = qualified(resource, group)
    subject = f'{subject} "{name}"' if name else subject
    return ApiError(
        403, "Forbidden", f"{subject} is forbidden: {reason}", _details(name, group, resource)
    )


def forbidden_path(user: str, verb: str, path: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'forbidden: User "{user}" cannot {verb} path "{path}"',
        {},
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def expired(rv: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_patch(accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


REASONS_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def injected(code: int, reason: str | None) -> ApiError:
    """A failure a test asked for (`KubeApi.fail_next`)."""
    reason = reason or REASONS_BY_CODE.get(code, "InternalError")
    messages = {
        429: "Too many requests, please try again later.",
        500: "Internal error occurred: injected failure",
        503: "the server is currently unable to handle the request",
        504: "the server was unable to return a response in the time allotted, but may still be "
        "processing the request",
    }
    headers = {"Retry-After": "1"} if code in (429, 503) else {}
    return ApiError(code, reason, messages.get(code, f"injected failure ({code})"), {}, headers)
