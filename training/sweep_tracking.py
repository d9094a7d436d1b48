"""The sweep driver's bookkeeping, as a Ray Tune callback: each trial's state, wall time and cost
(one progress line per change), the dollar budget as a stopper, and MLflow's view of the sweep:
a parent run with the search space, scheduler and budget as params, one nested run per trial
(the trial writes its own metrics; this closes it with its cost and how it ended), and the best
trial, the totals and what early stopping saved on the parent.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from ray import tune

from common.errors import first_line
from common.telemetry import MlflowMetric, MlflowTag
from common.vocabulary import StopReason
from training.config import TrainConfig
from training.search_space import SweepConfig, space_to_json
from training.sweep_state import SweepState, TrialRecord
from training.telemetry.progress import ProgressWriter

log = logging.getLogger(__name__)


class SweepTracker(tune.Callback):
    def __init__(
        self,
        base: TrainConfig,
        sweep: SweepConfig,
        sweep_id: str,
        state: SweepState,
        progress: ProgressWriter,
    ) -> None:
        self.base = base
        self.sweep = sweep
        self.sweep_id = sweep_id
        self.state = state
        self.progress = progress
        self.started = time.time()
        self.budget_hit = False
        self.stopper = BudgetStopper(self)
        self.mlflow = _MlflowParent(base, sweep, sweep_id)

    def __reduce__(self) -> Any:
        # Tune pickles its run config with the experiment; a restored driver puts a live tracker
        # back (training.tune), so a placeholder is all that needs saving.
        return (tune.Callback, ())

    # -- money ---------------------------------------------------------------------------------

    def cost(self, record: TrialRecord, now: float | None = None) -> float:
        return record.wall_seconds(now) / 3600 * self.sweep.usd_per_trial_hour

    def spent(self) -> float:
        now = time.time()
        return sum(self.cost(r, now) for r in self.state.trials.values())

    def saved(self) -> float:
        """What the trials stopped early would have cost running every epoch, beyond what they
        cost: their cost per epoch times the epochs they did not run."""
        total = 0.0
        for record in self.state.trials.values():
            if record.state == "stopped" and record.epochs:
                missing = self.base.epochs - record.epochs
                total += self.cost(record) / record.epochs * max(missing, 0)
        return total

    # -- Tune's callbacks ------------------------------------------------------------------------

    def open_parent(self) -> None:
        if self.state.parent_run_id is None:
            self.state.parent_run_id = self.mlflow.create()
        self.mlflow.run_id = self.state.parent_run_id
        self.state.save()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.state.trial(trial.trial_id)
        record.config = _plain(trial.config)
        record.state = "running"
        record.running_since = record.running_since or time.time()
        self._changed(record)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        record = self.state.trial(trial.trial_id)
        record.state = "running"
        record.running_since = record.running_since or time.time()
        record.epochs = int(result.get("epoch") or result.get("training_iteration") or 0)
        record.metrics = {
            k: float(v)
            for k, v in result.items()
            if k in _TRIAL_METRICS and isinstance(v, int | float) and not isinstance(v, bool)
        }
        record.mlflow_run_id = result.get("mlflow_run_id") or record.mlflow_run_id
        record.pid = result.get("pid") or record.pid
        self._changed(record)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.state.trial(trial.trial_id)
        record.close()
        if record.epochs >= self.base.epochs:
            record.state = "terminated"
        else:
            record.state = "stopped"
            record.stop_reason = self._stop_reason()
        self._ended(record, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.state.trial(trial.trial_id)
        record.close()
        record.state = "errored"
        record.error = _error_line(trial)
        self._ended(record, "FAILED")

    def _stop_reason(self) -> StopReason:
        if self.budget_hit:
            return "budget"
        if self.sweep.time_budget_s and time.time() - self.started >= self.sweep.time_budget_s:
            return "time_budget"
        return "scheduler"

    def _ended(self, record: TrialRecord, status: str) -> None:
        self._changed(record)
        if record.mlflow_run_id:
            self.mlflow.close_trial(record, status, self.cost(record))

    def _changed(self, record: TrialRecord) -> None:
        self.state.save()
        self.progress.emit(
            "trial",
            epoch=record.epochs,
            epochs=self.base.epochs,
            metrics=record.metrics,
            mlflow_run_id=record.mlflow_run_id,
            **trial_details(record, self.cost(record)),
        )

    # -- the end -------------------------------------------------------------------------------

    def finish(self, results: Any) -> int:
        """The sweep's summary: the best trial, totals, savings, on stdout and the parent run.
        Exit status 0 when some trial ran to a result, 1 when every trial errored."""
        for trial_id, record in self.state.trials.items():
            if record.state in ("pending", "running"):  # left when the sweep was cut short
                record.close()
                record.state = "stopped"
                record.stop_reason = self._stop_reason()
                self._ended(record, "KILLED")
            del trial_id
        best = self.best()
        total = self.spent()
        saved = self.saved()
        counts = {
            state: sum(1 for r in self.state.trials.values() if r.state == state)
            for state in ("terminated", "stopped", "errored")
        }
        self.mlflow.close_parent(best, total, saved, counts, self.sweep.metric)
        self.state.save()
        self.progress.emit(
            "done",
            epoch=best.epochs if best else 0,
            epochs=self.base.epochs,
            metrics=best.metrics if best else {},
            mlflow_run_id=self.state.parent_run_id,
            sweep=True,
            best_trial=best.name if best else None,
            best_config=best.config if best else None,
            best_metric=best.metrics.get(self.sweep.metric) if best else None,
            best_run_id=best.mlflow_run_id if best else None,
            metric=self.sweep.metric,
            mode=self.sweep.mode,
            total_cost_usd=round(total, 8),
            saved_usd=round(saved, 8),
            trials=len(self.state.trials),
            budget_hit=self.budget_hit,
            **{f"trials_{state}": n for state, n in counts.items()},
        )
        del results
        return 0 if best is not None else 1

    def best(self) -> TrialRecord | None:
        scored = [
            r
            for r in self.state.trials.values()
            if r.state != "errored" and self.sweep.metric in r.metrics
        ]
        if not scored:
            return None
        sign = 1 if self.sweep.mode == "max" else -1
        return max(scored, key=lambda r: sign * r.metrics[self.sweep.metric])


def trial_details(record: TrialRecord, cost_usd: float) -> dict[str, Any]:
    """A trial's facts in a progress line (the server reads them back into its status)."""
    return {
        "trial": record.name,
        "state": record.state,
        "config": record.config,
        "cost_usd": round(cost_usd, 8),
        "wall_s": round(record.wall_seconds(), 3),
        "stop_reason": record.stop_reason,
        "error": record.error,
        "pid": record.pid,
    }


class BudgetStopper(tune.Stopper):
    """Stops the whole sweep once the trials' spend reaches the dollar budget."""

    def __init__(self, tracker: SweepTracker) -> None:
        self.tracker = tracker

    def __reduce__(self) -> Any:
        return (_NoStop, ())

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        budget = self.tracker.sweep.budget_usd
        if budget is not None and self.tracker.spent() >= budget:
            if not self.tracker.budget_hit:
                self.tracker.progress.notice(
                    f"WARNING: the sweep's spend reached its budget ${budget:g}; stopping it"
                )
            self.tracker.budget_hit = True
        return self.tracker.budget_hit


class _NoStop(tune.Stopper):
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return False


_TRIAL_METRICS = frozenset(
    {
        MlflowMetric.TRAIN_LOSS,
        MlflowMetric.VAL_LOSS,
        MlflowMetric.VAL_ACCURACY,
        MlflowMetric.VAL_PERPLEXITY,
        MlflowMetric.EPOCH_SECONDS,
        MlflowMetric.SAMPLES_PER_SEC,
    }
)


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if isinstance(v, int | float | str | bool)}


def _error_line(trial: Any) -> str:
    try:
        error = trial.get_error()
    except Exception:  # the error file may be gone with a lost node
        error = None
    if error is None:
        return "the trial failed"
    lines = [line for line in str(error).splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("error:", "training.errors.ConfigError"))]
    return (wanted or lines[-1:] or ["the trial failed"])[-1][:500]


class _MlflowParent:
    """The sweep's own MLflow writes; MLflow away costs a warning, never the sweep."""

    def __init__(self, base: TrainConfig, sweep: SweepConfig, sweep_id: str) -> None:
        self.base = base
        self.sweep = sweep
        self.sweep_id = sweep_id
        self.uri = os.environ.get("MLFLOW_TRACKING_URI")
        self.run_id: str | None = None

    def _client(self) -> Any:
        if not self.uri:
            return None
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            import mlflow
        except ImportError:
            return None
        return mlflow.MlflowClient(self.uri)

    def _safely(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as e:  # MlflowException, connection errors: the sweep goes on
            log.warning("MLflow: could not %s: %s", what, first_line(e))
            return None

    def create(self) -> str | None:
        client = self._client()
        if client is None:
            return None

        def create() -> str:
            experiment = client.get_experiment_by_name(self.base.experiment)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(self.base.experiment)
            )
            found = client.search_runs(
                [experiment_id],
                filter_string=(
                    f"tags.`{MlflowTag.JOB_ID}` = '{self.sweep_id}' and "
                    f"tags.`{MlflowTag.KIND}` = 'sweep'"
                ),
                max_results=1,
            )
            if found:
                return str(found[0].info.run_id)
            run = client.create_run(
                experiment_id,
                run_name=self.sweep_id,
                tags={
                    MlflowTag.JOB_ID: self.sweep_id,
                    MlflowTag.KIND: "sweep",
                    MlflowTag.MODEL: self.base.model,
                    MlflowTag.DATASET_REQUESTED: self.base.dataset,
                },
            )
            run_id = str(run.info.run_id)
            params = {
                **{k: v for k, v in self.base.to_params().items() if k in _BASE_PARAMS},
                "search_space": space_to_json(self.sweep.space),
                "scheduler": self.sweep.scheduler,
                "search": self.sweep.search,
                "trials": str(self.sweep.total_trials),
                "max_concurrent": str(self.sweep.max_concurrent),
                "metric": self.sweep.metric,
                "mode": self.sweep.mode,
                "grace_period": str(self.sweep.grace_period),
                "reduction_factor": str(self.sweep.reduction_factor),
                "budget_usd": str(self.sweep.budget_usd),
                "time_budget_s": str(self.sweep.time_budget_s),
                "usd_per_trial_hour": str(self.sweep.usd_per_trial_hour),
                "cpus_per_trial": str(self.sweep.cpus_per_trial),
                "gpus_per_trial": str(self.sweep.gpus_per_trial),
            }
            from mlflow.entities import Param

            client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
            return run_id

        self.run_id = self._safely("create the sweep's run", create)
        return self.run_id

    def close_trial(self, record: TrialRecord, status: str, cost_usd: float) -> None:
        client = self._client()
        if client is None or record.mlflow_run_id is None:
            return
        run_id = record.mlflow_run_id

        def close() -> None:
            from mlflow.entities import Metric, RunTag

            now = int(time.time() * 1000)
            metrics = {
                "cost_usd": cost_usd,
                "wall_seconds": record.wall_s,
                MlflowMetric.EPOCHS_REACHED: float(record.epochs),
            }
            tags = {MlflowTag.TRIAL_STATE: record.state, MlflowTag.COST_USD: f"{cost_usd:.8f}"}
            if record.stop_reason:
                tags[MlflowTag.TRIAL_STOP_REASON] = record.stop_reason
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            client.set_terminated(run_id, status)

        self._safely(f"close the run of {record.name}", close)

    def close_parent(
        self,
        best: TrialRecord | None,
        total: float,
        saved: float,
        counts: dict[str, int],
        metric: str,
    ) -> None:
        client = self._client()
        run_id = self.run_id
        if client is None or run_id is None:
            return

        def close() -> None:
            from mlflow.entities import Metric, Param, RunTag

            now = int(time.time() * 1000)
            metrics = {
                "cost_usd": total,
                MlflowMetric.SWEEP_SAVED_USD: saved,
                MlflowMetric.SWEEP_TRIALS: float(sum(counts.values())),
                MlflowMetric.SWEEP_STOPPED_EARLY: float(counts.get("stopped", 0)),
                MlflowMetric.SWEEP_ERRORED: float(counts.get("errored", 0)),
            }
            tags = {MlflowTag.COST_USD: f"{total:.8f}"}
            params: list[Any] = []
            if best is not None:
                if metric in best.metrics:
                    metrics[f"best_{metric}"] = best.metrics[metric]
                for name, value in best.metrics.items():
                    metrics.setdefault(name, value)
                tags[MlflowTag.BEST_TRIAL] = best.name
                if best.mlflow_run_id:
                    tags[MlflowTag.BEST_RUN_ID] = best.mlflow_run_id
                tags["trainops.sweep.best_config"] = json.dumps(best.config)[:5000]
                existing = client.get_run(run_id).data.params
                params = [
                    Param(f"best.{k}", str(v))
                    for k, v in best.config.items()
                    if f"best.{k}" not in existing
                ]
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=params,
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            client.set_terminated(run_id, "FINISHED" if best is not None else "FAILED")

        self._safely("close the sweep's run", close)


_BASE_PARAMS = frozenset({"model", "dataset", "epochs", "batch_size", "lr", "smoke_test"})
