"""The HTTP side: an HTTP/1.1 server (keep-alive, chunked streams for watches and followed
logs) that authenticates the bearer token, authorises with RBAC, routes the REST paths to the
registry, and records every request. Fault hooks (latency, injected failures, dropped watches,
going down and up on the same port) live here too."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.kube_api import patching
from tests.kube_api.discovery import (
    AGGREGATED_V2,
    AGGREGATED_V2BETA1,
    Catalog,
    ResourceType,
    wants_aggregated,
)
from tests.kube_api.errors import (
    ApiError,
    bad_request,
    expired,
    forbidden,
    forbidden_path,
    injected,
    method_not_allowed,
    not_found,
    path_not_found,
    unauthorized,
)
from tests.kube_api.kubelet import Kubelet, read_log
from tests.kube_api.rbac import Rbac
from tests.kube_api.registry import Registry, manager_from_agent
from tests.kube_api.scheduler import set_condition
from tests.kube_api.store import TooOld, parse_time

NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    verb: str
    api_group: str | None
    resource: str | None
    """With its subresource: "pods/log"; None for discovery and other non-resource paths."""
    namespace: str | None
    name: str | None
    code: int
    field_manager: str | None
    method: str
    path: str


class RequestLog:
    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __iter__(self) -> Iterator[RequestRecord]:
        with self._lock:
            return iter(list(self._records))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __getitem__(self, index: int) -> RequestRecord:
        with self._lock:
            return self._records[index]

    def pairs(self) -> set[tuple[str, str, str]]:
        """(verb, API group, resource) of every resource request, to compare with a Role."""
        return {(r.verb, r.api_group or "", r.resource) for r in self if r.resource is not None}


@dataclass
class Failure:
    method: str
    path: re.Pattern[str]
    code: int
    reason: str | None
    times: int


@dataclass
class RequestInfo:
    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None
    is_resource: bool = True


class Faults:
    def __init__(self) -> None:
        self.latency_s = 0.0
        self._failures: list[Failure] = []
        self._lock = threading.Lock()

    def fail_next(
        self, method: str, path_regex: str, code: int, reason: str | None, times: int
    ) -> None:
        with self._lock:
            self._failures.append(
                Failure(method.upper(), re.compile(path_regex), code, reason, times)
            )

    def take(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            for failure in self._failures:
                if failure.method in (method, "*") and failure.path.search(path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return injected(failure.code, failure.reason)
        return None


def _truthy(value: str | None) -> bool:
    return value in ("true", "1", "True")


def request_info(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    verb_for = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if not parts or parts[0] not in ("api", "apis"):
        return RequestInfo(verb=method.lower(), is_resource=False)
    if parts[0] == "api":
        if len(parts) < 3:
            return RequestInfo(verb=method.lower(), is_resource=False)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return RequestInfo(verb=method.lower(), is_resource=False)
        group, version, rest = parts[1], parts[2], parts[3:]
    watch = False
    if rest and rest[0] == "watch":
        watch, rest = True, rest[1:]
    info = RequestInfo(verb="", group=group, version=version)
    if not rest:
        raise path_not_found()
    if (
        rest[0] == "namespaces"
        and len(rest) > 2
        and not (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES)
    ):
        info.namespace = rest[1]
        rest = rest[2:]
    if len(rest) > 3:
        raise path_not_found()
    info.resource = rest[0]
    info.name = rest[1] if len(rest) > 1 else None
    info.subresource = rest[2] if len(rest) > 2 else ""
    if info.resource == "namespaces" and info.namespace is None:
        info.namespace = info.name
    if method == "GET":
        if watch or _truthy(query.get("watch")):
            info.verb = "watch"
        else:
            info.verb = "get" if info.name else "list"
        selector = query.get("fieldSelector", "")
        m = re.fullmatch(r"metadata\.name==?([^,]+)", selector)
        if info.verb in ("list", "watch") and m and not info.name:
            info.name = m.group(1)
    elif method == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    else:
        info.verb = verb_for.get(method, method.lower())
    return info


class ApiServer:
    """The API server: HTTP in front of the registry, with authentication, RBAC and faults."""

    def __init__(
        self,
        registry: Registry,
        catalog: Catalog,
        kubelet: Kubelet | None,
        *,
        token: str,
        rbac: Rbac | None,
        bookmark_interval_s: float,
        port: int = 0,
    ) -> None:
        self.registry = registry
        self.catalog = catalog
        self.kubelet = kubelet
        self.token = token
        self.rbac = rbac
        self.user = rbac.user if rbac else "system:serviceaccount:trainops:trainops-mcp"
        self.bookmark_interval_s = bookmark_interval_s
        self.requests = RequestLog()
        self.faults = Faults()
        self.errors: list[str] = []
        self._connections: set[socket.socket] = set()
        self._watches: set[tuple[socket.socket, threading.Event]] = set()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self.up()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # -- lifecycle -------------------------------------------------------------------------

    def up(self) -> None:
        if self._httpd is not None:
            return
        api = self

        class Handler(_Handler):
            server_api = api

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="kube-api", daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        """Stop listening and drop every connection (the port stays this server's)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.drop_watches()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _shut(conn)

    def drop_watches(self) -> None:
        """Close every open watch connection abruptly, as a lost connection would."""
        with self._lock:
            watches = list(self._watches)
        for conn, dropped in watches:
            dropped.set()
            _shut(conn)
        self.registry.store.wake()

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- requests --------------------------------------------------------------------------

    def handle(self, h: _Handler) -> None:
        url = urllib.parse.urlsplit(h.path)
        path = url.path if url.path == "/" else url.path.rstrip("/")
        query = {
            k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()
        }
        method = h.command
        info = RequestInfo(verb=method.lower(), is_resource=False)
        manager: str | None = None
        recorded = False

        def record(code: int) -> None:
            """Log the request once, when its response starts (before the client has it)."""
            nonlocal recorded
            if recorded:
                return
            recorded = True
            resource = None
            if info.is_resource and info.resource:
                resource = (
                    f"{info.resource}/{info.subresource}" if info.subresource else info.resource
                )
            self.requests.add(
                RequestRecord(
                    verb=info.verb,
                    api_group=info.group if info.is_resource else None,
                    resource=resource,
                    namespace=info.namespace,
                    name=info.name,
                    code=code,
                    field_manager=manager,
                    method=method,
                    path=path,
                )
            )

        h.on_response = record
        body = h.read_body()
        try:
            if self.faults.latency_s:
                time.sleep(self.faults.latency_s)
            info = request_info(method, path, query)
            if info.verb in ("create", "update", "patch"):
                manager = query.get("fieldManager") or (
                    None
                    if h.headers.get("Content-Type", "").split(";")[0] == patching.APPLY_PATCH
                    else manager_from_agent(h.headers.get("User-Agent", ""))
                )
            failure = self.faults.take(method, path)
            if failure is not None:
                raise failure
            if h.headers.get("Authorization", "") != f"Bearer {self.token}":
                raise unauthorized()
            if not info.is_resource:
                self._non_resource(h, path)
                return
            self._authorize(info)
            self._resource(h, info, query, body)
        except ApiError as e:
            h.send_json(e.code, e.body, e.headers)
        except (BrokenPipeError, ConnectionResetError, OSError):
            record(499)  # the client went away
        except Exception:  # a bug in the server: a 500, and reported to the test at teardown
            trace = traceback.format_exc()
            self.errors.append(trace)
            message = f"Internal error occurred: {trace.splitlines()[-1]}"
            with contextlib.suppress(OSError):
                h.send_json(500, ApiError(500, "InternalError", message).body)
        finally:
            record(500)

    def _authorize(self, info: RequestInfo) -> None:
        if self.rbac is None:
            return
        if not self.rbac.allows(
            info.verb, info.group, info.resource, info.subresource, info.namespace, info.name
        ):
            raise forbidden(
                self.user,
                info.verb,
                info.resource,
                info.subresource,
                info.group,
                info.namespace,
                info.name,
            )

    def _non_resource(self, h: _Handler, path: str) -> int:
        if self.rbac is not None and not self.rbac.allows_path(h.command.lower(), path):
            raise forbidden_path(self.user, h.command.lower(), path)
        if h.command != "GET":
            raise method_not_allowed()
        accept = h.headers.get("Accept", "")
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz"):
            h.send_text(200, "ok")
            return 200
        if path == "/version":
            h.send_json(200, self.catalog.version())
            return 200
        aggregated = wants_aggregated(accept)
        if path == "/api":
            if aggregated:
                h.send_json(
                    200,
                    self.catalog.aggregated(True, aggregated),
                    content_type=_aggregated_type(aggregated),
                )
            else:
                h.send_json(200, self.catalog.api_versions())
            return 200
        if path == "/apis":
            if aggregated:
                h.send_json(
                    200,
                    self.catalog.aggregated(False, aggregated),
                    content_type=_aggregated_type(aggregated),
                )
            else:
                h.send_json(200, self.catalog.group_list())
            return 200
        if len(parts) == 2 and parts[0] == "api" and parts[1] == "v1":
            h.send_json(200, self.catalog.resource_list("", "v1"))
            return 200
        if len(parts) == 2 and parts[0] == "apis" and self.catalog.serves(parts[1]):
            h.send_json(200, self.catalog.group(parts[1]))
            return 200
        if len(parts) == 3 and parts[0] == "apis" and self.catalog.serves(parts[1], parts[2]):
            h.send_json(200, self.catalog.resource_list(parts[1], parts[2]))
            return 200
        raise path_not_found()

    def _resource(self, h: _Handler, info: RequestInfo, query: dict[str, str], raw: bytes) -> int:
        rtype = self.catalog.lookup(info.group, info.version, info.resource)
        if rtype is None:
            raise path_not_found()
        if info.subresource and rtype.subresource(info.subresource) is None:
            raise path_not_found()
        if info.namespace is not None and not rtype.namespaced and info.resource != "namespaces":
            raise path_not_found()
        ns = info.namespace if rtype.namespaced else None
        registry = self.registry
        dry_run = query.get("dryRun") == "All"
        validation = query.get("fieldValidation") or None
        content_type = h.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if info.subresource == "log":
            if info.verb != "get":
                raise method_not_allowed()
            return self._logs(h, rtype, ns, info.name or "", query)
        if info.subresource == "eviction":
            if info.verb != "create":
                raise method_not_allowed()
            return self._evict(
                h, rtype, ns, info.name or "", patching.parse_body(raw, content_type)
            )
        if info.verb == "get":
            obj = registry.get(rtype, ns, info.name or "")
            h.send_json(200, obj)
            return 200
        if info.verb == "list":
            body = registry.listing(
                rtype,
                ns,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                limit=int(query["limit"]) if query.get("limit", "").isdigit() else None,
                continue_=query.get("continue") or None,
            )
            h.send_json(200, body)
            return 200
        if info.verb == "watch":
            return self._watch(h, rtype, ns, query)
        if info.verb == "create":
            if info.name:
                raise method_not_allowed()
            manager = query.get("fieldManager") or manager_from_agent(
                h.headers.get("User-Agent", "")
            )
            written = registry.create(
                rtype,
                ns,
                patching.parse_body(raw, content_type),
                manager=manager,
                dry_run=dry_run,
                field_validation=validation,
            )
        elif info.verb == "update":
            manager = query.get("fieldManager") or manager_from_agent(
                h.headers.get("User-Agent", "")
            )
            written = registry.update(
                rtype,
                ns,
                info.name or "",
                patching.parse_body(raw, content_type),
                subresource=info.subresource or None,
                manager=manager,
                dry_run=dry_run,
                field_validation=validation,
            )
        elif info.verb == "patch":
            patch_manager = query.get("fieldManager")
            if content_type != patching.APPLY_PATCH:
                patch_manager = patch_manager or manager_from_agent(h.headers.get("User-Agent", ""))

            def may_create() -> None:
                if self.rbac is not None and not self.rbac.allows(
                    "create", info.group, info.resource, "", info.namespace, None
                ):
                    raise forbidden(
                        self.user,
                        "create",
                        info.resource,
                        "",
                        info.group,
                        info.namespace,
                        info.name,
                    )

            written = registry.patch(
                rtype,
                ns,
                info.name or "",
                patching.parse_body(raw, content_type),
                content_type,
                subresource=info.subresource or None,
                manager=patch_manager,
                force=_truthy(query.get("force")),
                dry_run=dry_run,
                field_validation=validation,
                may_create=may_create,
            )
        elif info.verb in ("delete", "deletecollection"):
            options = patching.parse_body(raw, "application/json") or {}
            if not isinstance(options, dict):
                raise bad_request("DeleteOptions must be an object")
            if "propagationPolicy" in query:
                options["propagationPolicy"] = query["propagationPolicy"]
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            if "orphanDependents" in query:
                options["orphanDependents"] = _truthy(query["orphanDependents"])
            if info.verb == "delete":
                written = registry.delete(rtype, ns, info.name or "", options, dry_run=dry_run)
            else:
                written = registry.delete_collection(
                    rtype,
                    ns,
                    label_selector=query.get("labelSelector"),
                    field_selector=query.get("fieldSelector"),
                    options=options,
                )
        else:
            raise method_not_allowed()
        headers = {"Warning": [_warning(w) for w in written.warnings]}
        h.send_json(written.code, written.body, headers)
        return written.code

    # -- logs ------------------------------------------------------------------------------

    def _logs(
        self, h: _Handler, rtype: ResourceType, ns: str | None, name: str, query: dict[str, str]
    ) -> int:
        if self.kubelet is None:
            raise path_not_found()
        pod = self.registry.get(rtype, ns, name)
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = query.get("container")
        if not container:
            if len(containers) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            init = [c["name"] for c in pod["spec"].get("initContainers") or []]
            if container not in init:
                raise bad_request(f"container {container} is not valid for pod {name}")
        path = self.kubelet.log_file(pod, container, _truthy(query.get("previous")))
        timestamps = _truthy(query.get("timestamps"))
        tail = int(query["tailLines"]) if query.get("tailLines", "").lstrip("-").isdigit() else None
        limit = int(query["limitBytes"]) if query.get("limitBytes", "").isdigit() else None
        since = None
        if query.get("sinceSeconds", "").isdigit():
            since = time.time() - int(query["sinceSeconds"])
        elif query.get("sinceTime"):
            since = parse_time(query["sinceTime"])
        if path is None:
            h.send_text(200, "")
            return 200
        if _truthy(query.get("follow")):
            key = ("", "pods", pod["metadata"]["namespace"], name)
            chunks = self.kubelet.follow(
                key, pod["metadata"]["uid"], container, path, timestamps=timestamps, tail_lines=tail
            )
            h.stream(chunks, "text/plain")
            return 200
        text = read_log(
            path, timestamps=timestamps, tail_lines=tail, since=since, limit_bytes=limit
        )
        h.send_text(200, text)
        return 200

    def _evict(self, h: _Handler, rtype: ResourceType, ns: str | None, name: str, body: Any) -> int:
        key = self.registry.key(rtype, ns, name)
        current = self.registry.store.get(key)
        if current is None:
            raise not_found("pods", "", name)

        def disrupt(pod: dict[str, Any]) -> dict[str, Any]:
            set_condition(
                pod, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting"
            )
            return pod

        self.registry.store.mutate(key, disrupt)
        options = (body or {}).get("deleteOptions") or {} if isinstance(body, dict) else {}
        self.registry.delete(rtype, ns, name, options)
        h.send_json(
            201,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
        )
        return 201

    # -- watch -----------------------------------------------------------------------------

    def _watch(
        self, h: _Handler, rtype: ResourceType, ns: str | None, query: dict[str, str]
    ) -> int:
        store = self.registry.store
        matches = self.registry.selectors(
            rtype, query.get("labelSelector"), query.get("fieldSelector")
        )
        group, plural = rtype.storage_key
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = time.monotonic() + timeout if timeout else None
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        requested = query.get("resourceVersion", "")

        def in_scope(obj: dict[str, Any]) -> bool:
            return ns is None or obj["metadata"].get("namespace") == ns

        initial: list[dict[str, Any]] = []
        try:
            if requested in ("", "0"):
                items, progress = store.objects(group, plural, ns if rtype.namespaced else None)
                initial = [i for i in items if matches(i)]
            else:
                if not requested.isdigit():
                    raise bad_request(
                        "invalid resource version: strconv.ParseUint: parsing "
                        f'"{requested}": invalid syntax'
                    )
                progress = int(requested)
                store.changes_after(progress, group, plural)
        except TooOld as e:
            h.start_stream("application/json")
            h.chunk(_event("ERROR", expired(e.rv, e.oldest).body))
            h.end_stream()
            return 200
        dropped = threading.Event()
        entry = (h.connection, dropped)
        with self._lock:
            self._watches.add(entry)
        try:
            h.start_stream("application/json")
            for obj in initial:
                h.chunk(_event("ADDED", self.registry.present(rtype, obj)))
            last_sent = time.monotonic()
            while not dropped.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    changes, reached = store.changes_after(progress, group, plural)
                except TooOld as e:
                    h.chunk(_event("ERROR", expired(e.rv, e.oldest).body))
                    break
                for change in changes:
                    # As the watch cache does: an object that comes to match the selectors is
                    # ADDED, one that stops matching is DELETED.
                    was = change.prev is not None and in_scope(change.prev) and matches(change.prev)
                    now = change.type != "DELETED" and in_scope(change.obj) and matches(change.obj)
                    if change.type == "DELETED":
                        kind = "DELETED" if was else None
                    elif now:
                        kind = "MODIFIED" if was else "ADDED"
                    else:
                        kind = "DELETED" if was else None
                    if kind is not None:
                        h.chunk(_event(kind, self.registry.present(rtype, change.obj)))
                        last_sent = time.monotonic()
                progress = max(progress, reached)
                if bookmarks and time.monotonic() - last_sent >= self.bookmark_interval_s:
                    mark = {
                        "kind": rtype.kind,
                        "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(progress)},
                    }
                    h.chunk(_event("BOOKMARK", mark))
                    last_sent = time.monotonic()
                wait = 0.5
                if bookmarks:
                    wait = min(
                        wait, max(0.01, self.bookmark_interval_s - (time.monotonic() - last_sent))
                    )
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                store.wait(progress, wait)
            if not dropped.is_set():
                h.end_stream()
            else:
                h.close_connection = True
        finally:
            with self._lock:
                self._watches.discard(entry)
        return 200


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _aggregated_type(version: str) -> str:
    return AGGREGATED_V2 if version == "v2" else AGGREGATED_V2BETA1


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_api: ApiServer
    on_response: Callable[[int], None] = staticmethod(lambda code: None)

    def send_response_only(self, code: int, message: str | None = None) -> None:
        self.on_response(code)
        super().send_response_only(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every response back by tens of milliseconds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server_api.track(self.connection, True)

    def finish(self) -> None:
        self.server_api.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _headers(self, headers: dict[str, Any] | None) -> None:
        for name, value in (headers or {}).items():
            for v in value if isinstance(value, list) else [value]:
                self.send_header(name, v)
        self.send_header("Audit-Id", _audit_id())
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Date", self.date_time_string())

    def send_json(
        self,
        code: int,
        body: Any,
        headers: dict[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> None:
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        self.send_response_only(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self._headers(headers)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self._headers(None)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self, content_type: str) -> None:
        self.send_response_only(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self._headers(None)
        self.end_headers()
        self.wfile.flush()

    def chunk(self, data: bytes) -> None:
        if not data:
            return
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def stream(self, chunks: Iterator[bytes], content_type: str) -> None:
        self.start_stream(content_type)
        for data in chunks:
            self.chunk(data)
        self.end_stream()

    def _dispatch(self) -> None:
        self.server_api.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


def _audit_id() -> str:
    return str(uuid.uuid4())


def _warning(text: str) -> str:
    """A Warning header value (RFC 7234 warn-code 299, the text a quoted-string)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'
