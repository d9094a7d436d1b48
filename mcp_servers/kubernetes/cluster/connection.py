"""Reaching the Kubernetes API: the client built once from kubeconfig or in-cluster config, and
every API failure turned into a trainops error kind with a message that says the fix."""

from __future__ import annotations

import http
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from common.errors import Conflict, InvalidArgument, NotFound, Refused, TrainopsError, Unavailable
from common.settings import ClusterSettings, Settings, SettingsError

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ApiCall:
    """What a request does, in RBAC's terms: a 403 names exactly this."""

    verb: str
    resource: str
    namespace: str | None = None
    group: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {resource}{where}"


class Connection:
    """The clients of one cluster: the core API for pods, logs, events, nodes and ConfigMaps;
    the custom-objects API for the job kinds (batch/v1 Jobs included: same REST shape)."""

    def __init__(self, api_client: client.ApiClient, settings: ClusterSettings) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.objects = client.CustomObjectsApi(api_client)
        self.timeout = (CONNECT_TIMEOUT_S, settings.request_timeout_s)


def connect(settings: Settings) -> Connection:
    """The cluster of the kubeconfig's (or the chosen) context, else the pod's in-cluster config."""
    cluster = settings.cluster
    configuration = client.Configuration()
    try:
        if cluster.kubeconfig is not None or cluster.context is not None or _has_kubeconfig():
            config.load_kube_config(
                config_file=str(cluster.kubeconfig) if cluster.kubeconfig else None,
                context=cluster.context,
                client_configuration=configuration,
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as e:
        raise SettingsError(
            f"no usable Kubernetes config ({_short(e)}); set KUBECONFIG or cluster.kubeconfig "
            "(and cluster.context), or run inside a pod with a service account"
        ) from None
    # urllib3 retries on its own would stretch a bounded timeout several times over.
    configuration.retries = 0
    return Connection(client.ApiClient(configuration), cluster)


def _has_kubeconfig() -> bool:
    paths = os.environ.get("KUBECONFIG", "")
    if paths:
        return any(Path(p).expanduser().is_file() for p in paths.split(os.pathsep) if p)
    return Path("~/.kube/config").expanduser().is_file()


@contextmanager
def api_call(call: ApiCall, *, not_found: str | None = None) -> Iterator[None]:
    """Run API requests; any failure leaves as the TrainopsError of its kind."""
    try:
        yield
    except TrainopsError:
        raise
    except ApiException as e:
        raise translate(e, call, not_found) from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise Unavailable(
            f"the Kubernetes API did not answer ({_short(e)}); check the cluster is up and "
            "KUBECONFIG points at it"
        ) from None


def translate(error: ApiException, call: ApiCall, not_found: str | None = None) -> TrainopsError:
    status = int(getattr(error, "status", 0) or 0)
    reason, message = _status_body(error)
    if status == http.HTTPStatus.UNAUTHORIZED:
        return Unavailable(
            "the Kubernetes API rejected the credentials (401 Unauthorized); refresh the "
            "kubeconfig's token or certificate (e.g. log in to the cluster again)"
        )
    if status == http.HTTPStatus.FORBIDDEN:
        return Refused(
            f"RBAC forbids {call} (403 Forbidden); grant the verb in the server's Role "
            "(k8s/base/rbac.yaml) or use an allowed namespace"
        )
    if status == http.HTTPStatus.NOT_FOUND:
        return NotFound(not_found or f"not found: {message or call}")
    if status == http.HTTPStatus.CONFLICT:
        return Conflict(f"{message or 'conflict'}; choose another name")
    if status in (http.HTTPStatus.UNPROCESSABLE_ENTITY, http.HTTPStatus.BAD_REQUEST):
        return InvalidArgument(f"the API server rejected the request: {message or reason}")
    if status == http.HTTPStatus.TOO_MANY_REQUESTS or status >= 500 or status == 0:
        return Unavailable(
            f"the Kubernetes API failed ({status} {reason or ''}): {message}; retry shortly"
        )
    return Unavailable(f"the Kubernetes API answered {status} {reason}: {message}")


def _status_body(error: ApiException) -> tuple[str, str]:
    """The Status object's reason and message (one line), when the body is one."""
    body = getattr(error, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        data = json.loads(body) if isinstance(body, str) and body else {}
    except json.JSONDecodeError:
        data = {}
    reason = str(data.get("reason") or getattr(error, "reason", "") or "")
    message = " ".join(str(data.get("message") or "").split())[:300]
    causes = (
        data.get("details", {}).get("causes") if isinstance(data.get("details"), dict) else None
    )
    if causes and isinstance(causes, list) and not message:
        message = "; ".join(str(c.get("message", "")) for c in causes if isinstance(c, dict))
    return reason, message


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__
