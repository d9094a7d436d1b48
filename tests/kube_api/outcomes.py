"""Scripted outcomes for fault cases: what the scheduler and the kubelet do with the pods of a
job a test names, instead of running its containers' commands."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.kube_api.store import Store

OutcomeKind = Literal["run", "unschedulable", "image_pull_backoff", "oom_killed", "exit", "hold"]


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind = "run"
    codes: tuple[int, ...] = ()
    """exit: the exit codes of the first instances (then the real command runs)."""
    always: bool = False
    """exit: every instance exits with codes[0]."""
    message: str = ""
    at_epoch: int = 1

    @classmethod
    def run(cls) -> Outcome:
        """Run the containers' real commands (the default)."""
        return cls()

    @classmethod
    def unschedulable(cls, message: str = "") -> Outcome:
        """No node takes the pods, whatever they ask for."""
        return cls("unschedulable", message=message)

    @classmethod
    def image_pull_backoff(cls) -> Outcome:
        """The image cannot be pulled: ErrImagePull, then ImagePullBackOff; nothing runs."""
        return cls("image_pull_backoff")

    @classmethod
    def oom_killed(cls, at_epoch: int = 1) -> Outcome:
        """Run the real command; the kernel kills it when it prints its `at_epoch`-th
        `{"event": "epoch"}` line (terminated reason OOMKilled, exit code 137)."""
        return cls("oom_killed", at_epoch=at_epoch)

    @classmethod
    def exit_codes(cls, codes: Sequence[int]) -> Outcome:
        """The first container instances exit with these codes (after a line on their log);
        the ones after run the real command."""
        return cls("exit", codes=tuple(codes), message="error: simulated failure")

    @classmethod
    def exit_code(cls, code: int, message: str = "error: simulated failure") -> Outcome:
        """Every container instance exits with `code`, writing `message` to its log and its
        termination message file."""
        return cls("exit", codes=(code,), always=True, message=message)

    @classmethod
    def hold(cls) -> Outcome:
        """The containers run (a sleeping process) until their pod is deleted."""
        return cls("hold")


@dataclass
class _Script:
    job: str
    outcome: Outcome
    pod: str | None
    used: dict[str, int] = field(default_factory=dict)
    """Instances started so far, per replica."""


class Scripts:
    """Outcomes by job name (a glob on the top-level owner's name), optionally narrowed to the
    pods whose names match `pod`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._scripts: list[_Script] = []
        self._lock = threading.Lock()

    def add(self, job: str, outcome: Outcome, pod: str | None = None) -> None:
        with self._lock:
            self._scripts.append(_Script(job, outcome, pod))

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()

    def root_name(self, obj: dict[str, Any]) -> str:
        """The name of the object at the top of `obj`'s controller owner chain."""
        seen = 0
        while seen < 10:
            refs = obj["metadata"].get("ownerReferences") or []
            ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
            if ref is None:
                break
            owner = self.store.find_uid(ref["uid"])
            if owner is None:
                return ref["name"]
            obj = owner[1]
            seen += 1
        return obj["metadata"]["name"]

    def _find(self, pod: dict[str, Any]) -> _Script | None:
        root = self.root_name(pod)
        name = pod["metadata"]["name"]
        with self._lock:
            for script in self._scripts:
                if fnmatch.fnmatchcase(root, script.job) and (
                    script.pod is None or fnmatch.fnmatchcase(name, script.pod)
                ):
                    return script
        return None

    def for_pod(self, pod: dict[str, Any]) -> Outcome:
        script = self._find(pod)
        return script.outcome if script else Outcome.run()

    def next_instance(self, pod: dict[str, Any], container: str) -> tuple[Outcome, int | None]:
        """The outcome for the next instance of a container, and the exit code it is to
        fake (None: run it)."""
        script = self._find(pod)
        if script is None:
            return Outcome.run(), None
        outcome = script.outcome
        if outcome.kind != "exit":
            return outcome, None
        replica = f"{replica_key(pod)}/{container}"
        with self._lock:
            used = script.used.get(replica, 0)
            script.used[replica] = used + 1
        if outcome.always:
            return outcome, outcome.codes[0]
        if used < len(outcome.codes):
            return outcome, outcome.codes[used]
        return Outcome.run(), None


def replica_key(pod: dict[str, Any]) -> str:
    """What stays the same across the pods that replace each other: a Job's pods by job and
    completion index, anything else by pod name."""
    labels = pod["metadata"].get("labels") or {}
    job = labels.get("batch.kubernetes.io/job-name")
    if job:
        return f"{job}#{labels.get('batch.kubernetes.io/job-completion-index', '0')}"
    return pod["metadata"]["name"]
