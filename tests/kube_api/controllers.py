"""kube-controller-manager's part: the Job controller (batch/v1, as of Kubernetes 1.33), the
garbage collector (ownerReferences, foreground deletion), the namespace and TTL-after-finished
controllers, and the loop that runs every reconciler whenever the store changes."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube_api.errors import ApiError
from tests.kube_api.events import Recorder
from tests.kube_api.registry import FOREGROUND, Registry, random_suffix
from tests.kube_api.scheduler import set_condition
from tests.kube_api.store import Key, Store, StoreNotFound, clone, now, parse_time

log = logging.getLogger("kube_api.controllers")

JOB_CONTROLLER = "job-controller"
TRACKING = "batch.kubernetes.io/job-tracking"
"""The finalizer that keeps a Job's pod until the Job controller has counted it."""
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
TERMINAL = ("Succeeded", "Failed")


def controller_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_uid(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref["uid"]
    return None


def by_owner(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        uid = owner_uid(item)
        if uid:
            out.setdefault(uid, []).append(item)
    return out


def key_of(obj: dict[str, Any], group: str, plural: str) -> Key:
    return (group, plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None
    )


def is_true(obj: dict[str, Any], type_: str) -> bool:
    found = condition(obj, type_)
    return bool(found and found.get("status") == "True")


def phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def compress_indexes(indexes: set[int]) -> str:
    """1,2,3,5 -> "1-3,5", as status.completedIndexes shows them."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
        else:
            if run:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


@dataclass(frozen=True)
class Counts:
    """What a Job's pods came to: succeeded and failed (as counted), the completed indexes."""

    succeeded: int
    failed: int
    done_indexes: set[int] | None


class JobController:
    """batch/v1 Jobs: creates their pods, counts what they become, applies backoffLimit,
    podFailurePolicy, activeDeadlineSeconds and suspend, and finishes them with the 1.31+
    condition pairs (SuccessCriteriaMet/Complete, FailureTarget/Failed)."""

    def __init__(self, registry: Registry, recorder: Recorder, backoff_s: float) -> None:
        self.registry = registry
        self.store = registry.store
        self.recorder = recorder
        self.backoff_s = backoff_s
        self.counted: dict[str, dict[str, str]] = {}
        """job uid -> pod uid -> Succeeded | Failed | Ignored, for every pod seen finished."""
        self.indexes: dict[str, dict[str, int]] = {}
        """job uid -> pod uid -> completion index (Indexed jobs)."""
        self.seen_active: dict[str, set[str]] = {}
        self.released: set[str] = set()
        """Pods deleted by this controller, not to be counted as failures."""
        self.next_create: dict[str, float] = {}

    def event(self, job: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.recorder.event(job, type_, reason, message, component=JOB_CONTROLLER)

    def step(self) -> None:
        jobs, _ = self.store.objects("batch", "jobs")
        pods, _ = self.store.objects("", "pods")
        owned = by_owner(pods)
        live = {job["metadata"]["uid"] for job in jobs}
        deleting = {
            job["metadata"]["uid"] for job in jobs if job["metadata"].get("deletionTimestamp")
        }
        for pod in pods:
            # Orphans (their Job gone, or released by an Orphan deletion) are let go, and so are
            # the finished pods of a Job being deleted, and its pods that never reached a node
            # (no kubelet will ever finish them).
            if TRACKING not in (pod["metadata"].get("finalizers") or []):
                continue
            owner = owner_uid(pod)
            unbound = not (pod.get("spec") or {}).get("nodeName")
            if owner not in live or (owner in deleting and (phase(pod) in TERMINAL or unbound)):
                self.registry.remove_finalizer(key_of(pod, "", "pods"), TRACKING)
        for job in jobs:
            self.reconcile(job, owned.get(job["metadata"]["uid"], []))
        for uid in list(self.counted):
            if uid not in live:
                self.counted.pop(uid, None)
                self.seen_active.pop(uid, None)
                self.indexes.pop(uid, None)

    def _delete_pod(self, job: dict[str, Any], pod: dict[str, Any], *, count: bool = True) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            return
        if not count:
            self.released.add(pod["metadata"]["uid"])
        key = key_of(pod, "", "pods")
        current = self.store.get(key)
        if current is None:
            return
        self.registry.delete_object(key, current, "Background")
        self.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def reconcile(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            return
        counted = self.counted.setdefault(uid, {})
        indexes = self.indexes.setdefault(uid, {})
        status = clone(job.get("status") or {})
        indexed = spec.get("completionMode") == "Indexed"
        for pod in pods:
            if INDEX_LABEL in (pod["metadata"].get("labels") or {}):
                indexes[pod["metadata"]["uid"]] = int(pod["metadata"]["labels"][INDEX_LABEL])
        active = [
            p
            for p in pods
            if phase(p) not in TERMINAL and not p["metadata"].get("deletionTimestamp")
        ]
        terminating = [
            p for p in pods if phase(p) not in TERMINAL and p["metadata"].get("deletionTimestamp")
        ]
        failure: tuple[str, str] | None = None
        new_failure = False
        # What became of the pods since the last look.
        for pod in pods:
            pod_uid = pod["metadata"]["uid"]
            if pod_uid in counted or phase(pod) not in TERMINAL:
                continue
            if phase(pod) == "Succeeded":
                counted[pod_uid] = "Succeeded"
                continue
            if pod_uid in self.released:
                counted[pod_uid] = "Ignored"
                continue
            action, message = self._failure_policy(job, pod)
            if action == "Ignore":
                counted[pod_uid] = "Ignored"
                continue
            counted[pod_uid] = "Failed"
            new_failure = True
            if action == "FailJob" and failure is None:
                failure = ("PodFailurePolicy", message)
        for pod in pods:
            if pod["metadata"]["uid"] in counted and TRACKING in (
                pod["metadata"].get("finalizers") or []
            ):
                self.registry.remove_finalizer(key_of(pod, "", "pods"), TRACKING)
        now_active = {p["metadata"]["uid"] for p in active + terminating}
        present = {p["metadata"]["uid"] for p in pods}
        for gone in self.seen_active.get(uid, set()) - present:
            if gone not in counted:
                counted[gone] = "Ignored" if gone in self.released else "Failed"
                new_failure = new_failure or gone not in self.released
        self.seen_active[uid] = now_active
        if new_failure:
            self.next_create[uid] = time.monotonic() + self.backoff_s
        succeeded = sum(1 for v in counted.values() if v == "Succeeded")
        failed = sum(1 for v in counted.values() if v == "Failed")
        done_indexes = {indexes[p] for p, v in counted.items() if v == "Succeeded" and p in indexes}
        counts = Counts(succeeded, failed, done_indexes if indexed else None)
        if is_true(job, "Complete") or is_true(job, "Failed"):
            for pod in active:
                self._delete_pod(job, pod)
            self._write_status(
                job, job["status"], active=[], terminating=terminating + active, counts=counts
            )
            self._ttl(job)
            return

        # Suspension.
        if spec.get("suspend"):
            for pod in active:
                self._delete_pod(job, pod, count=False)
            if not is_true(job, "Suspended"):
                set_condition(job, "Suspended", "True", "JobSuspended", "Job suspended")
                self.event(job, "Normal", "Suspended", "Job suspended")
            status = job["status"]
            status.pop("startTime", None)
            self._write_status(job, status, active=[], terminating=terminating, counts=counts)
            return
        if is_true(job, "Suspended"):
            set_condition(job, "Suspended", "False", "JobResumed", "Job resumed")
            self.event(job, "Normal", "Resumed", "Job resumed")
            job["status"]["startTime"] = now()
        status = job.setdefault("status", status)
        status.setdefault("startTime", now())

        # Why it might end now.
        completions = spec.get("completions")
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        limit = spec.get("backoffLimit", 6)
        success = False
        if failure is None and is_true(job, "FailureTarget"):
            target = condition(job, "FailureTarget") or {}
            failure = (target.get("reason", ""), target.get("message", ""))
        if failure is None and not is_true(job, "SuccessCriteriaMet"):
            if failed > limit or (policy == "OnFailure" and self._past_restarts(active, limit)):
                failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
            deadline = spec.get("activeDeadlineSeconds")
            started = parse_time(status["startTime"])
            if failure is None and deadline is not None and time.time() - started >= deadline:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        if failure is None:
            if indexed:
                success = completions is not None and len(done_indexes) >= completions
            elif completions is not None:
                success = succeeded >= completions
            else:
                success = succeeded > 0 and not active
            success = success or is_true(job, "SuccessCriteriaMet")

        if failure is not None:
            reason, message = failure
            if not is_true(job, "FailureTarget"):
                set_condition(job, "FailureTarget", "True", reason, message)
                self.event(job, "Warning", reason, message)
            for pod in active:
                self._delete_pod(job, pod)
            if not terminating and not [p for p in active if phase(p) not in TERMINAL]:
                set_condition(job, "Failed", "True", reason, message)
            self._write_status(
                job, job["status"], active=[], terminating=terminating + active, counts=counts
            )
            return
        if success:
            if not is_true(job, "SuccessCriteriaMet"):
                set_condition(
                    job,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
            for pod in active:
                self._delete_pod(job, pod, count=False)
            if not terminating and not active:
                set_condition(
                    job,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
                job["status"]["completionTime"] = now()
                self.event(job, "Normal", "Completed", "Job completed")
            self._write_status(
                job, job["status"], active=[], terminating=terminating + active, counts=counts
            )
            return

        # Make the pods it wants.
        parallelism = spec.get("parallelism", 1)
        replace_terminating = (
            spec.get("podReplacementPolicy", "TerminatingOrFailed") == "TerminatingOrFailed"
        )
        busy = len(active) + (0 if replace_terminating else len(terminating))
        if indexed:
            taken = {
                indexes.get(p["metadata"]["uid"])
                for p in active + ([] if replace_terminating else terminating)
            }
            missing = [
                i for i in range(completions or 0) if i not in done_indexes and i not in taken
            ]
            wanted: list[int | None] = list(missing[: max(0, parallelism - busy)])
        else:
            remaining = (
                parallelism if completions is None else min(parallelism, completions - succeeded)
            )
            wanted = [None for _ in range(max(0, remaining - busy))]
        if wanted and time.monotonic() >= self.next_create.get(uid, 0):
            for index in wanted:
                created = self._create_pod(job, index)
                if created is not None:
                    active.append(created)
                    self.seen_active[uid].add(created["metadata"]["uid"])
        self._write_status(
            job, job["status"], active=active, terminating=terminating, counts=counts
        )

    def _past_restarts(self, active: list[dict[str, Any]], limit: int) -> bool:
        restarts = sum(
            c.get("restartCount", 0)
            for p in active
            for c in (p.get("status") or {}).get("containerStatuses") or []
        )
        return restarts > 0 if limit == 0 else restarts >= limit

    def _failure_policy(self, job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
        """The action of the first podFailurePolicy rule a failed pod matches (Count if none)."""
        rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
        meta = pod["metadata"]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for i, rule in enumerate(rules):
            codes = rule.get("onExitCodes")
            action = rule.get("action", "Count")
            if codes is not None:
                for cs in statuses:
                    if codes.get("containerName") and cs["name"] != codes["containerName"]:
                        continue
                    term = (cs.get("state") or {}).get("terminated")
                    if not term:
                        continue
                    code = term.get("exitCode", 0)
                    values = codes.get("values") or []
                    hit = (
                        code in values
                        if codes.get("operator") == "In"
                        else (code != 0 and code not in values)
                    )
                    if hit:
                        pod_name = f"{meta['namespace']}/{meta['name']}"
                        return action, (
                            f"Container {cs['name']} for pod {pod_name} failed with exit code "
                            f"{code} matching {action} rule at index {i}"
                        )
            for pattern in rule.get("onPodConditions") or []:
                found = condition(pod, pattern["type"])
                if found and found.get("status") == pattern.get("status", "True"):
                    return action, (
                        f"Pod {meta['namespace']}/{meta['name']} has condition {pattern['type']} "
                        f"matching {action} rule at index {i}"
                    )
        return "Count", ""

    def _create_pod(self, job: dict[str, Any], index: int | None) -> dict[str, Any] | None:
        meta, spec = job["metadata"], job["spec"]
        template = clone(spec.get("template") or {})
        pod_meta = template.get("metadata") or {}
        labels = dict(pod_meta.get("labels") or {})
        annotations = dict(pod_meta.get("annotations") or {})
        pod_spec = template.get("spec") or {}
        prefix = f"{meta['name']}-"
        if index is not None:
            labels[INDEX_LABEL] = str(index)
            annotations[INDEX_LABEL] = str(index)
            prefix = f"{meta['name']}-{index}-"
            pod_spec["hostname"] = f"{meta['name']}-{index}"
            for container in pod_spec.get("containers") or []:
                env = container.setdefault("env", [])
                if not any(e["name"] == "JOB_COMPLETION_INDEX" for e in env):
                    env.append(
                        {
                            "name": "JOB_COMPLETION_INDEX",
                            "valueFrom": {
                                "fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": f"metadata.annotations['{INDEX_LABEL}']",
                                }
                            },
                        }
                    )
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": prefix + random_suffix(),
                "generateName": prefix,
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [controller_ref(job)],
                "finalizers": [TRACKING],
            },
            "spec": pod_spec,
        }
        if annotations:
            body["metadata"]["annotations"] = annotations
        try:
            pod = self.registry.create_owned("", "pods", body, "kube-controller-manager")
        except ApiError as e:
            self.event(job, "Warning", "FailedCreate", f"Error creating: {e.message}")
            return None
        self.event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        return pod

    def _write_status(
        self,
        job: dict[str, Any],
        status: dict[str, Any],
        *,
        active: list[dict[str, Any]],
        terminating: list[dict[str, Any]],
        counts: Counts,
    ) -> None:
        status = clone(status)
        succeeded, failed, done_indexes = counts.succeeded, counts.failed, counts.done_indexes
        for name, value in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
            if value:
                status[name] = value
            else:
                status.pop(name, None)
        status["ready"] = sum(1 for p in active if is_true(p, "Ready"))
        status["terminating"] = len(terminating)
        status["uncountedTerminatedPods"] = {}
        if done_indexes is not None:
            status["completedIndexes"] = compress_indexes(done_indexes)
        key = key_of(job, "batch", "jobs")
        uid = job["metadata"]["uid"]

        def write(current: dict[str, Any]) -> dict[str, Any] | None:
            if current["metadata"]["uid"] != uid:
                return None
            current["status"] = status
            return current

        self.store.mutate(key, write)

    def _ttl(self, job: dict[str, Any]) -> None:
        """The TTL-after-finished controller."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished = (
            condition(job, "Complete") if is_true(job, "Complete") else condition(job, "Failed")
        )
        if finished is None:
            return
        if time.time() - parse_time(finished["lastTransitionTime"]) >= ttl:
            key = key_of(job, "batch", "jobs")
            current = self.store.get(key)
            if current is not None and current["metadata"]["uid"] == job["metadata"]["uid"]:
                # As the TTL-after-finished controller deletes: in the foreground.
                self.registry.delete_object(key, current, "Foreground")


class GarbageCollector:
    """Deletes what has lost all its owners; finishes foreground deletions once the blocking
    dependents are gone; empties terminating namespaces."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store

    def step(self) -> None:
        uids = self.store.uids()
        for key in self.store.key_list():
            obj = self.store.get(key)
            if obj is None:
                continue
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if (
                refs
                and not any(r.get("uid") in uids for r in refs)
                and not meta.get("deletionTimestamp")
            ):
                self.registry.delete_object(key, obj, "Background")
                continue
            if meta.get("deletionTimestamp") and FOREGROUND in (meta.get("finalizers") or []):
                blocking = self.registry.dependents(meta["uid"])
                for dep_key, dep in blocking:
                    if not dep["metadata"].get("deletionTimestamp"):
                        self.registry.delete_object(dep_key, dep, "Foreground")
                if not blocking:
                    self.registry.remove_finalizer(key, FOREGROUND)
        for ns in self.store.objects("", "namespaces")[0]:
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            inside = [k for k in self.store.key_list() if k[2] == name and k[1] != "namespaces"]
            for key in inside:
                obj = self.store.get(key)
                if obj is not None and not obj["metadata"].get("deletionTimestamp"):
                    self.registry.delete_object(key, obj, "Background")
            if not inside:
                with contextlib.suppress(StoreNotFound):
                    self.store.remove(("", "namespaces", "", name))


class ControllerManager:
    """Runs every reconciler after each change to the store (and at least every `tick_s`, for
    deadlines and backoffs). A reconciler that raises is recorded in `errors`, not fatal."""

    def __init__(
        self, store: Store, reconcilers: list[Callable[[], None]], tick_s: float = 0.2
    ) -> None:
        self.store = store
        self.reconcilers = reconcilers
        self.tick_s = tick_s
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controller-manager", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.store.wake()
        self._thread.join(10)

    def _loop(self) -> None:
        rv = 0
        while not self._stop.is_set():
            rv = self.store.wait(rv, self.tick_s)
            for reconcile in self.reconcilers:
                if self._stop.is_set():
                    return
                try:
                    reconcile()
                except Exception:  # a control loop survives its reconcilers' bugs, and reports them
                    self.errors.append(traceback.format_exc())
                    log.exception("reconciler failed")
