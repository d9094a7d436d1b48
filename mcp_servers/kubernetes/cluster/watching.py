"""Watching a job for change: its object and its pods, each by a Kubernetes watch that resumes
from the last resourceVersion it saw (bookmarks keep it fresh), lists again after 410 Gone, and
reconnects when the API server drops the stream. No polling: a change wakes the waiter at once."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from mcp_servers.kubernetes.cluster.connection import CONNECT_TIMEOUT_S, Connection
from mcp_servers.kubernetes.cluster.kinds import KindInfo

log = logging.getLogger(__name__)

GONE = 410
MAX_STREAM_S = 60  # a stream the server ends on time is simply reopened
RECONNECT_BACKOFF_S = (0.2, 5.0)
# After the stream is asked to stop, a blocked read still ends within this.
READ_SLACK_S = 5.0


class PhaseWatch:
    def __init__(
        self, api: Connection, info: KindInfo, namespace: str, name: str, deadline: float
    ) -> None:
        self.deadline = deadline
        self._changed: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        objects = api.objects
        streams: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
            (
                objects.list_namespaced_custom_object,
                (info.group, info.version, namespace, info.plural),
                {"field_selector": f"metadata.name={name}"},
            ),
            (
                api.core.list_namespaced_pod,
                (namespace,),
                {"label_selector": info.pod_selector(name)},
            ),
        ]
        self._threads = [
            threading.Thread(
                target=self._follow, args=stream, name=f"watch-{name}-{i}", daemon=True
            )
            for i, stream in enumerate(streams)
        ]
        for thread in self._threads:
            thread.start()

    def changes(self) -> Iterator[None]:
        """One item per burst of change, until the deadline passes."""
        while (remaining := self.deadline - time.monotonic()) > 0:
            try:
                self._changed.get(timeout=remaining)
            except queue.Empty:
                return
            while not self._changed.empty():  # a burst of events is one change
                self._changed.get_nowait()
            yield None

    def stop(self) -> None:
        self._stop.set()

    def _follow(
        self, list_fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        resource_version = self._list_version(list_fn, args, kw)
        self._changed.put("LISTED")  # what changed before the list is in it: look once
        backoff = RECONNECT_BACKOFF_S[0]
        while not self._stop.is_set() and (remaining := self.deadline - time.monotonic()) > 0:
            stream_s = max(1, int(min(remaining, MAX_STREAM_S)))
            watcher = watch.Watch()
            try:
                for event in watcher.stream(
                    list_fn,
                    *args,
                    **kw,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=stream_s,
                    _request_timeout=(CONNECT_TIMEOUT_S, stream_s + READ_SLACK_S),
                ):
                    if self._stop.is_set():
                        watcher.stop()
                        break
                    raw = event.get("raw_object") or {}
                    resource_version = raw.get("metadata", {}).get("resourceVersion") or (
                        resource_version
                    )
                    if event.get("type") != "BOOKMARK":
                        self._changed.put(str(event.get("type")))
                backoff = RECONNECT_BACKOFF_S[0]
            except ApiException as e:
                if e.status == GONE:  # history compacted: list again, and look once more
                    resource_version = self._list_version(list_fn, args, kw)
                    self._changed.put("RELISTED")
                    continue
                log.info("watch failed (%s); reconnecting", e.status)
                backoff = self._pause(backoff)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                log.info("watch dropped (%s); reconnecting", type(e).__name__)
                backoff = self._pause(backoff)

    def _list_version(
        self, list_fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> str | None:
        """The list's resourceVersion: the watch starts there, missing nothing after it."""
        backoff = RECONNECT_BACKOFF_S[0]
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            try:
                listed = list_fn(
                    *args, **kw, _preload_content=False, _request_timeout=(CONNECT_TIMEOUT_S, 30)
                )
                return json.loads(listed.data).get("metadata", {}).get("resourceVersion")
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
                backoff = self._pause(backoff)
        return None

    def _pause(self, backoff: float) -> float:
        self._stop.wait(min(backoff, max(0.0, self.deadline - time.monotonic())))
        return min(backoff * 2, RECONNECT_BACKOFF_S[1])
