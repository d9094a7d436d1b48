"""The telemetry schema, defined once: what a training job writes and what the servers read back.

- MLflow: the run's tag keys and metric names.
- Prometheus: the exporter's metric and label names (and the cluster's names we read: DCGM,
  cAdvisor, kube-state-metrics).
- The progress event: one JSON line per event on rank 0's stdout, which the local backend and
  the Kubernetes server read from the job's log.

The cost breakdown written back to the run is the MLflow server's `CostBreakdown` model; its
fields are the cost metric names (see `mcp_servers.mlflow.schemas`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args


class MlflowTag:
    """Tag keys of a job's MLflow run."""

    JOB_ID: Final = "trainops.job_id"
    WORLD_SIZE: Final = "trainops.world_size"
    DEVICE: Final = "trainops.device"
    """The GPU model (e.g. 'NVIDIA H100 80GB HBM3') or 'cpu': what GPU rates are matched on."""
    BACKEND: Final = "trainops.backend"
    PRECISION: Final = "trainops.precision"
    RESTARTS: Final = "trainops.restarts"
    MODEL: Final = "model"
    DATASET_REQUESTED: Final = "dataset.requested"
    DATASET_USED: Final = "dataset.used"
    DATASET_FALLBACK_REASON: Final = "dataset.fallback_reason"
    COST_RATE_CARD: Final = "trainops.cost.rate_card"
    COST_CURRENCY: Final = "trainops.cost.currency"
    COST_USD: Final = "trainops.cost.usd"
    COST_REVISION: Final = "trainops.cost.revision"
    """Bumped when a run is priced again with other figures; it is the step cost metrics use."""
    PARENT_RUN_ID: Final = "mlflow.parentRunId"
    """MLflow's own nesting tag: a sweep's trial runs sit under the sweep's run."""
    KIND: Final = "trainops.kind"
    """"sweep" on a sweep's parent run (a job's run has none)."""
    SWEEP_ID: Final = "trainops.sweep_id"
    """On a trial's run: the sweep (job id) it belongs to."""
    TRIAL: Final = "trainops.trial"
    """On a trial's run: its name in the sweep (trial-3)."""
    TRIAL_STATE: Final = "trainops.trial.state"
    TRIAL_STOP_REASON: Final = "trainops.trial.stop_reason"
    BEST_TRIAL: Final = "trainops.sweep.best_trial"
    BEST_RUN_ID: Final = "trainops.sweep.best_run_id"
    """On a sweep's run: the run of its best trial (the model to register)."""


def is_trainops_tag(key: str) -> bool:
    """Tags trainops writes (the ones its run summaries show)."""
    return key.startswith(("trainops.", "dataset.")) or key == MlflowTag.MODEL


class MlflowParam:
    """Params of a job's MLflow run: the training config's fields, as flat strings."""

    MODEL: Final = "model"
    DATASET: Final = "dataset"


class MlflowMetric:
    """Metric names of a job's MLflow run (per epoch unless said)."""

    TRAIN_LOSS: Final = "train_loss"
    TRAIN_LOSS_STEP: Final = "train_loss_step"
    """Sampled every --log-every steps, at the optimizer step."""
    VAL_LOSS: Final = "val_loss"
    VAL_ACCURACY: Final = "val_accuracy"
    VAL_PERPLEXITY: Final = "val_perplexity"
    TEST_LOSS: Final = "test_loss"
    TEST_ACCURACY: Final = "test_accuracy"
    SAMPLES_PER_SEC: Final = "samples_per_sec"
    LR: Final = "lr"
    EPOCH_SECONDS: Final = "epoch_seconds"
    EPOCHS_REACHED: Final = "epochs_reached"
    """A trial's epochs when it ended (fewer than asked when it was stopped early)."""
    SWEEP_TRIALS: Final = "sweep_trials"
    SWEEP_STOPPED_EARLY: Final = "sweep_trials_stopped_early"
    SWEEP_ERRORED: Final = "sweep_trials_errored"
    SWEEP_SAVED_USD: Final = "sweep_saved_by_early_stopping_usd"
    """What the stopped trials would have cost had they run every epoch, minus what they did."""


HEADLINE_METRICS: Final = (
    MlflowMetric.VAL_ACCURACY,
    MlflowMetric.TEST_ACCURACY,
    MlflowMetric.VAL_LOSS,
    MlflowMetric.VAL_PERPLEXITY,
    MlflowMetric.TRAIN_LOSS,
)
"""What a person is shown first of a run, in this order."""
_HIGHER_IS_BETTER: Final = ("accuracy", "f1", "auc", "precision", "recall", "samples_per_sec")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is the better one (accuracy yes, loss no)."""
    return any(word in metric for word in _HIGHER_IS_BETTER)


class PromMetric:
    """What a job's exporter serves (labelled `job_id` and `rank`), and what a Kubernetes
    cluster's exporters serve about its pods (DCGM, cAdvisor, kube-state-metrics)."""

    TRAIN_STEPS: Final = "trainops_train_steps"
    """A counter: Prometheus stores it as trainops_train_steps_total."""
    TRAIN_SAMPLES: Final = "trainops_train_samples"
    TRAIN_LOSS: Final = "trainops_train_loss"
    TRAIN_EPOCH: Final = "trainops_train_epoch"
    STEP_SECONDS: Final = "trainops_step_seconds"
    LEARNING_RATE: Final = "trainops_learning_rate"
    GPU_UTILIZATION: Final = "trainops_gpu_utilization_ratio"
    GPU_MEMORY: Final = "trainops_gpu_memory_bytes"
    PROCESS_CPU: Final = "process_cpu_seconds_total"
    PROCESS_RSS: Final = "process_resident_memory_bytes"
    DCGM_GPU_UTIL: Final = "DCGM_FI_DEV_GPU_UTIL"
    """Percent (0-100), labelled with the pod."""
    DCGM_FB_USED: Final = "DCGM_FI_DEV_FB_USED"
    """MiB of GPU memory in use, labelled with the pod."""
    DCGM_GR_ENGINE_ACTIVE: Final = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    """Ratio (0-1) of time the graphics/compute engine was busy, labelled with the pod: a truer
    "busy" than DCGM_FI_DEV_GPU_UTIL on A100/H100, where the profiling fields exist."""
    CONTAINER_CPU: Final = "container_cpu_usage_seconds_total"
    """cAdvisor (the kubelet): CPU-seconds a container used, labelled namespace, pod, container."""
    CONTAINER_MEMORY: Final = "container_memory_working_set_bytes"
    """cAdvisor: a container's working set (what the OOM killer counts), in bytes."""
    KUBE_POD_REQUESTS: Final = "kube_pod_container_resource_requests"
    """kube-state-metrics: a container's requests, labelled resource (cpu in cores, memory ...)."""


def counter_total(name: str) -> str:
    """The series name Prometheus stores a counter under."""
    return f"{name}_total"


class PromLabel:
    JOB_ID: Final = "job_id"
    RANK: Final = "rank"
    REPLICA: Final = "replica"
    NAMESPACE: Final = "namespace"


TRIAL_STARTS: Final = "trainops: starting"
"""A sweep trial's first line, `trainops: starting trial-3`: Ray forwards it with the worker's
pid, and a worker may run one trial after another, so the lines after it are that trial's."""

MLFLOW_OUTBOX_FILE: Final = "mlflow_outbox.jsonl"
"""Beside a job's checkpoints: the MLflow writes MLflow has not taken yet (see training's
MlflowSink); whoever finds it there may deliver it with `python -m training.telemetry.drain`."""
MLFLOW_URI_FILE_ENV: Final = "TRAINOPS_MLFLOW_URI_FILE"
"""A file that says where MLflow is now, should it move while a job runs (the local backend)."""

# -- the progress event ----------------------------------------------------------------------------

ProgressKind = Literal["start", "resumed", "epoch", "trial", "done"]
"""`trial`: a sweep's trial started, reported an epoch, or ended (details: common.vocabulary's
TrialState and the trial's name, config, cost)."""
PROGRESS_KINDS: Final[tuple[ProgressKind, ...]] = get_args(ProgressKind)
_FIELDS: Final = ("event", "time", "epoch", "epochs", "step", "metrics", "mlflow_run_id")


@dataclass(frozen=True, kw_only=True)
class ProgressEvent:
    """One line of a job's progress: `{"event": "epoch", "time": ..., "metrics": {...}, ...}`.

    `start` opens the job, `resumed` follows a restore from a checkpoint, `epoch` ends each epoch
    and `done` ends the job. Metrics are numbers; NaN and infinities, which JSON lacks, travel as
    the strings "nan", "inf" and "-inf" and come back as floats.
    """

    event: ProgressKind
    time: float
    epoch: int | None = None
    """Epochs completed (for `resumed`: the epoch resumed from)."""
    epochs: int | None = None
    """Epochs asked for."""
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """The event's other facts (device, dataset used, checkpoint, warnings, ...), flat."""

    def to_line(self) -> str:
        line: dict[str, Any] = {"event": self.event, "time": round(self.time, 3)}
        for key in ("epoch", "epochs", "step", "mlflow_run_id"):
            if (value := getattr(self, key)) is not None:
                line[key] = value
        if self.event == "done":  # the final line always says which run holds the job, if any
            line["mlflow_run_id"] = self.mlflow_run_id
        if self.metrics:
            line["metrics"] = {k: _encode(float(v)) for k, v in self.metrics.items()}
        clashes = set(self.details) & set(_FIELDS)
        if clashes:
            raise ValueError(f"details may not redefine {sorted(clashes)}")
        line.update({k: _json_safe(v) for k, v in self.details.items()})
        return json.dumps(line)

    @classmethod
    def from_line(cls, line: str) -> ProgressEvent | None:
        """The event a log line holds, or None for any other line (people's notices, tracebacks,
        a line cut short by a crash)."""
        if not line.startswith('{"event"'):
            return None
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("event") not in PROGRESS_KINDS:
            return None
        given = data.get("metrics")
        decoded = {
            str(k): _decode(v) for k, v in (given.items() if isinstance(given, dict) else ())
        }
        try:
            return cls(
                event=data["event"],
                time=float(data.get("time") or 0.0),
                epoch=_int_or_none(data.get("epoch")),
                epochs=_int_or_none(data.get("epochs")),
                step=_int_or_none(data.get("step")),
                metrics={k: v for k, v in decoded.items() if v is not None},
                mlflow_run_id=data.get("mlflow_run_id") or None,
                details={k: v for k, v in data.items() if k not in _FIELDS},
            )
        except (TypeError, ValueError):
            return None

    @property
    def finite_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if math.isfinite(v)}

    @property
    def nonfinite_metrics(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.metrics.items() if not math.isfinite(v)}


def _encode(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _decode(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _json_safe(value: Any) -> Any:
    """JSON has no NaN/inf: say them as strings rather than write invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
