"""A sweep as its driver's log tells it: the trials' progress lines folded into a SweepStatus,
and one trial's own lines picked out of the driver's (Ray forwards every trial's output there,
prefixed with its worker's pid). Both backends read the same driver log: a local file, or the
RayJob's submitter pod."""

from __future__ import annotations

import re
from typing import Any

from common.telemetry import TRIAL_STARTS, ProgressEvent
from common.vocabulary import STOP_REASONS, TRIAL_STATES, StopReason, TrialState
from mcp_servers.kubernetes.schemas import MAX_TRIALS_SHOWN, SweepStatus, TrialStatus

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIX = re.compile(r"^\((?P<actor>[\w.:-]+) pid=(?P<pid>\d+)(?:, ip=[^)]*)?\)\s?")
TRIAL_REPLICA = re.compile(r"^trial-\d+$")


def sweep_of(lines: list[str]) -> SweepStatus | None:
    """The sweep's trials, best and totals from the driver's progress lines; None when the
    driver has not started the sweep yet."""
    start: ProgressEvent | None = None
    done: ProgressEvent | None = None
    trials: dict[str, TrialStatus] = {}
    for line in lines:
        event = ProgressEvent.from_line(line)
        if event is None:
            continue
        if event.event == "start" and event.details.get("sweep"):
            start, done = event, None
        elif event.event == "trial" and (trial := _trial(event)) is not None:
            trials[trial.name] = trial
        elif event.event == "done" and event.details.get("sweep"):
            done = event
    if start is None:
        return None
    metric = str(start.details.get("metric") or "") or None
    mode = start.details.get("mode") if start.details.get("mode") in ("max", "min") else None
    best = _best(list(trials.values()), metric, mode)
    if done is not None and (name := done.details.get("best_trial")) in trials:
        best = trials[name]
    counts: dict[TrialState, int] = {}
    for trial in trials.values():
        counts[trial.state] = counts.get(trial.state, 0) + 1
    total = int(start.details.get("trials") or len(trials))
    counts["pending"] = max(total - len(trials), 0) + counts.get("pending", 0)
    shown = _shown(list(trials.values()), best, metric, mode)
    return SweepStatus(
        trials_total=total,
        counts={state: n for state, n in counts.items() if n},
        trials=shown,
        trials_omitted=len(trials) - len(shown),
        metric=metric,
        mode=mode,
        best=best,
        cost_usd=round(
            float(done.details.get("total_cost_usd", 0.0))
            if done
            else sum(t.cost_usd for t in trials.values()),
            8,
        ),
        saved_usd=float(done.details["saved_usd"])
        if done and "saved_usd" in done.details
        else None,
        trial_seconds=round(sum(t.wall_s for t in trials.values()), 3),
        finished=done is not None,
        budget_hit=bool(done.details.get("budget_hit")) if done else False,
    )


def _trial(event: ProgressEvent) -> TrialStatus | None:
    details = event.details
    name, state = details.get("trial"), details.get("state")
    if not isinstance(name, str) or state not in TRIAL_STATES:
        return None
    reason = details.get("stop_reason")
    given = details.get("config")
    config: dict[str, Any] = given if isinstance(given, dict) else {}
    return TrialStatus(
        name=name,
        state=state,
        config={k: v for k, v in config.items() if isinstance(v, int | float | str | bool)},
        epochs=event.epoch or 0,
        metrics=event.finite_metrics,
        cost_usd=_number(details.get("cost_usd")),
        wall_s=_number(details.get("wall_s")),
        stop_reason=reason if reason in STOP_REASONS else None,
        error=str(details["error"])[:500] if details.get("error") else None,
        mlflow_run_id=event.mlflow_run_id,
    )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _score(trial: TrialStatus, metric: str | None, mode: str | None) -> float | None:
    if metric is None or metric not in trial.metrics or trial.state == "errored":
        return None
    value = trial.metrics[metric]
    return value if mode != "min" else -value


def _best(trials: list[TrialStatus], metric: str | None, mode: str | None) -> TrialStatus | None:
    scored = [(s, t) for t in trials if (s := _score(t, metric, mode)) is not None]
    return max(scored, key=lambda pair: pair[0])[1] if scored else None


def _shown(
    trials: list[TrialStatus], best: TrialStatus | None, metric: str | None, mode: str | None
) -> list[TrialStatus]:
    """Running trials first, then the rest best first; at most MAX_TRIALS_SHOWN."""
    if len(trials) <= MAX_TRIALS_SHOWN:
        return sorted(trials, key=_index)
    running = [t for t in trials if t.state == "running"]
    others = sorted(
        (t for t in trials if t.state != "running"),
        key=lambda t: -(_score(t, metric, mode) or float("-inf")),
    )
    ranked = {t.name: t for t in [*running, *([best] if best else []), *others]}
    return sorted(list(ranked.values())[:MAX_TRIALS_SHOWN], key=_index)


def _index(trial: TrialStatus) -> int:
    digits = trial.name.rpartition("-")[2]
    return int(digits) if digits.isdigit() else 0


def trial_pids(lines: list[str]) -> dict[str, set[int]]:
    """Each trial's worker pids, as its progress lines report them."""
    pids: dict[str, set[int]] = {}
    for line in lines:
        event = ProgressEvent.from_line(line)
        if event is None or event.event != "trial":
            continue
        name, pid = event.details.get("trial"), event.details.get("pid")
        if isinstance(name, str) and isinstance(pid, int):
            pids.setdefault(name, set()).add(pid)
    return pids


def trial_lines(lines: list[str], trial: str) -> list[str]:
    """A trial's own output: the lines Ray forwarded from its worker since the trial's start
    line (a worker runs trials one after another), without Ray's prefix, and the driver's
    progress lines about it. A worker whose start line was cut off is known by the pid the
    trial's progress lines name."""
    pids = trial_pids(lines).get(trial, set())
    running: dict[int, str] = {}  # worker pid -> the trial it runs now
    picked = []
    for raw in lines:
        line = _ANSI.sub("", raw)
        match = _PREFIX.match(line)
        if match:
            pid, text = int(match.group("pid")), line[match.end() :]
            if text.startswith(TRIAL_STARTS):
                running[pid] = text[len(TRIAL_STARTS) :].strip()
            if running.get(pid, trial if pid in pids else None) == trial:
                picked.append(text)
            continue
        event = ProgressEvent.from_line(line)
        if event is not None and event.event == "trial" and event.details.get("trial") == trial:
            picked.append(line)
    return picked


def trial_names(lines: list[str]) -> list[str]:
    """The trials the driver's log names, in order."""
    names: list[str] = []
    for line in lines:
        event = ProgressEvent.from_line(line)
        if event is not None and event.event == "trial":
            name = event.details.get("trial")
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def clean(line: str) -> str:
    """A driver line without the colour codes Ray may put around its prefixes."""
    return _ANSI.sub("", line)


def sweep_message(sweep: SweepStatus) -> str:
    """One line on a running sweep: its trials so far and the best."""
    counts = ", ".join(f"{n} {state}" for state, n in sweep.counts.items())
    line = f"trials: {counts}"
    best = sweep.best
    if best is not None and sweep.metric and sweep.metric in best.metrics:
        line += f"; best {sweep.metric} {best.metrics[sweep.metric]:.4g} ({best.name})"
    return line


def settled(sweep: SweepStatus | None, phase: str) -> SweepStatus | None:
    """A cancelled sweep: the trials its driver last reported running were stopped with it."""
    if sweep is None or sweep.finished or phase != "Cancelled":
        return sweep
    reason: StopReason = "cancelled"
    trials = [
        t.model_copy(update={"state": "stopped", "stop_reason": reason})
        if t.state == "running"
        else t
        for t in sweep.trials
    ]
    counts = dict(sweep.counts)
    if running := counts.pop("running", 0):
        counts["stopped"] = counts.get("stopped", 0) + running
    return sweep.model_copy(update={"trials": trials, "counts": counts})
