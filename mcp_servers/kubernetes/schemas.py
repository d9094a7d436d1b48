"""What the Kubernetes MCP server takes and returns: pydantic models at the tool boundary."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.billing import BilledResources
from common.gpus import GpuType
from common.oci import MAX_REFERENCE_LENGTH, is_image_reference
from common.quantities import MEMORY_QUANTITY, parse_bytes
from common.telemetry import ProgressKind
from common.vocabulary import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    MAX_BATCH_SIZE,
    MAX_CPUS_PER_REPLICA,
    MAX_DEADLINE_SECONDS,
    MAX_EPOCHS,
    MAX_JOB_NAME_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LR,
    MAX_TRIALS,
    RFC1123_LABEL,
    TERMINAL_PHASES,
    UNSCHEDULABLE,
    DatasetName,
    ModelName,
    Phase,
    StopReason,
    TrialState,
    processes_per_node,
)
from mcp_servers.kubernetes.job_env import env_problem
from mcp_servers.redaction import is_secret_name
from mcp_servers.toolref import ToolCatalog
from training.config import check_config
from training.errors import ConfigError
from training.search_space import SchedulerName, SearchName, parse_sweep

Kind = Literal["Job", "PyTorchJob", "TrainJob", "RayJob"]
"""RayJob: a Ray Tune sweep (SweepSpec); the others train one configuration."""
BackendName = Literal["local", "cluster"]
JobId = Annotated[
    str,
    Field(
        pattern=RFC1123_LABEL,
        max_length=MAX_LABEL_LENGTH,
        description="Job id, e.g. cnn-mnist-3f2a.",
    ),
]


MIN_MEMORY_BYTES = 64 * 2**20
MAX_ENV_VALUE = 4096
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
RESERVED_FLAGS = frozenset(
    {
        "--model",
        "--dataset",
        "--epochs",
        "--batch-size",
        "--lr",
        "--data-dir",
        "--checkpoint-dir",
        "--fallback-dataset",
        "--smoke-test",
        "--device",
        "--experiment",
        "--run-name",
    }
)


class SecretKeyRef(BaseModel):
    """One key of a Secret (on a cluster a Kubernetes Secret in the job's namespace; locally
    the file $TRAINOPS_HOME/secrets/<secret>/<key>)."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(pattern=RFC1123_LABEL, max_length=MAX_LABEL_LENGTH)
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)


class TrainingJobSpec(BaseModel):
    """A training job: what to train and on what resources. Everything else has a safe default."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName = Field(description="Architecture: cnn, mlp, resnet18 or gpt (token data).")
    dataset: DatasetName = Field(description="Dataset; gpt trains on synthetic tokens.")
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="Global batch, split over ranks."
    )
    lr: float = Field(DEFAULT_LR, gt=0, le=MAX_LR)
    nodes: int = Field(1, ge=1, description="Replicas (pods). More than one renders a PyTorchJob.")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per replica; 0 trains on CPU with gloo.")
    gpu_type: GpuType | None = Field(
        None,
        description="GPU type (A100, H100, ...): the job runs on nodes of that type "
        "(nvidia.com/gpu.product) and is priced at its rate; needs gpus_per_node.",
    )
    cpus: float = Field(
        1.0, gt=0, le=MAX_CPUS_PER_REPLICA, description="CPUs requested per replica."
    )
    memory: str = Field(
        "2Gi", pattern=MEMORY_QUANTITY, max_length=32, description="Memory per replica, e.g. 4Gi."
    )
    image: str | None = Field(
        None,
        max_length=MAX_REFERENCE_LENGTH,
        description="Training image (an OCI reference under the allowed registries); defaults "
        "to the configured one.",
    )
    name: str | None = Field(
        None,
        max_length=MAX_JOB_NAME_LENGTH,
        pattern=RFC1123_LABEL,
        description="Job id to use (lowercase RFC 1123 label); generated when omitted.",
    )
    namespace: str | None = Field(None, pattern=RFC1123_LABEL)
    fallback_dataset: DatasetName | None = Field(
        None, description="Dataset to use, loudly, when the requested one can't be had."
    )
    smoke_test: bool = Field(False, description="Tiny data and model: runs in seconds on CPU.")
    extra_args: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="More training flags, e.g. ['--precision', 'bf16', '--checkpoint-every', '2'].",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables that tune the job (NCCL_*, OMP_*, its own "
        "settings); no secrets, paths or endpoints: see secret_env.",
    )
    secret_env: dict[str, SecretKeyRef] = Field(
        default_factory=dict,
        description="Environment variables whose values come from a Secret, by reference "
        "(e.g. {'HF_TOKEN': {'secret': 'hf', 'key': 'token'}}); the value never passes through "
        "trainops.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra Kubernetes labels.")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Creating twice with the same key returns the first job.",
    )
    kind: Literal["auto", "Job", "PyTorchJob", "TrainJob"] = Field(
        "auto",
        description="auto: Job for one replica, PyTorchJob for more; or a Trainer v2 TrainJob.",
    )
    backoff_limit: int | None = Field(None, ge=0, le=10, description="Restarts before Failed.")
    active_deadline_seconds: int | None = Field(
        None, ge=1, le=MAX_DEADLINE_SECONDS, description="Wall-time limit (s)."
    )

    @field_validator("extra_args")
    @classmethod
    def _not_reserved(cls, args: list[str]) -> list[str]:
        if {"-h", "--help"} & {a.split("=", 1)[0] for a in args}:
            raise ValueError(
                "extra_args may not ask for --help (a job prints no usage); the training flags "
                "are in the README's table"
            )
        reserved = sorted(RESERVED_FLAGS.intersection(a.split("=", 1)[0] for a in args))
        if reserved:
            verb = "is" if len(reserved) == 1 else "are"
            raise ValueError(
                f"{', '.join(reserved)} {verb} set from the spec's own fields; use those"
            )
        return args

    @model_validator(mode="after")
    def _training_command_is_valid(self) -> TrainingJobSpec:
        """The training entry point must accept the command this spec renders, flag for flag,
        and train what the spec says (extra_args may tune, not redefine, the job)."""
        if self.kind == "TrainJob" and (
            self.backoff_limit is not None or self.active_deadline_seconds is not None
        ):
            raise ValueError(
                "a TrainJob takes its retries and deadline from its training runtime; "
                "drop backoff_limit and active_deadline_seconds, or use kind 'auto'"
            )
        if self.resolved_kind() == "Job" and self.nodes > 1:
            raise ValueError(
                "a Job runs one replica; use kind 'auto' or 'PyTorchJob' for nodes > 1"
            )
        try:
            # The container's paths do not exist here; s3-style stand-ins are checked by syntax.
            cfg = check_config(
                self.training_args(data_dir=_STAND_IN_DATA, checkpoint_dir=_STAND_IN_CHECKPOINTS)
            )
        except ConfigError as e:
            raise ValueError(f"the training command would fail: {e}") from None
        expected = {
            "model": self.model,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "data_dir": _STAND_IN_DATA,
            "checkpoint_dir": _STAND_IN_CHECKPOINTS,
            "fallback_dataset": self.fallback_dataset,
            "smoke_test": self.smoke_test,
        }
        if changed := [k for k, v in expected.items() if getattr(cfg, k) != v]:
            raise ValueError(
                f"extra_args redefine {', '.join(changed)}; set those with the spec's own fields"
            )
        return self

    def training_args(self, *, data_dir: str, checkpoint_dir: str) -> list[str]:
        """The `training.train` flags for this spec."""
        args = [
            "--model",
            self.model,
            "--dataset",
            self.dataset,
            "--epochs",
            str(self.epochs),
            "--batch-size",
            str(self.batch_size),
            "--lr",
            str(self.lr),
            "--data-dir",
            data_dir,
            "--checkpoint-dir",
            checkpoint_dir,
        ]
        if self.fallback_dataset:
            args += ["--fallback-dataset", self.fallback_dataset]
        if self.smoke_test:
            args.append("--smoke-test")
        if self.gpus_per_node:
            args += ["--device", "cuda"]
        return args + self.extra_args

    @field_validator("image")
    @classmethod
    def _image_reference(cls, image: str | None) -> str | None:
        if image is not None and not is_image_reference(image):
            raise ValueError(
                f"image {image[:80]!r} is not an OCI image reference (REGISTRY/NAME[:TAG]"
                "[@DIGEST], no spaces or shell); omit it for the default image"
            )
        return image

    @model_validator(mode="after")
    def _gpu_type_needs_gpus(self) -> TrainingJobSpec:
        if self.gpu_type is not None and not self.gpus_per_node:
            raise ValueError(
                f"gpu_type {self.gpu_type} needs GPUs; set gpus_per_node, or drop gpu_type to "
                "train on CPU"
            )
        return self

    @field_validator("memory")
    @classmethod
    def _some_memory(cls, memory: str) -> str:
        if parse_bytes(memory) < MIN_MEMORY_BYTES:
            raise ValueError(
                f"memory {memory!r} is too little for a training process; ask for 64Mi or more"
            )
        return memory

    @field_validator("cpus")
    @classmethod
    def _whole_millicpus(cls, cpus: float) -> float:
        if cpus < 0.001:
            raise ValueError(f"cpus {cpus} is less than a millicpu (1m); ask for 0.1 or more")
        return cpus

    @field_validator("env")
    @classmethod
    def _safe_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if problem := env_problem(name):
                raise ValueError(problem)
            if len(value) > MAX_ENV_VALUE:
                raise ValueError(f"{name}'s value is longer than {MAX_ENV_VALUE} characters")
        return env

    @field_validator("secret_env")
    @classmethod
    def _safe_secret_env(cls, env: dict[str, SecretKeyRef]) -> dict[str, SecretKeyRef]:
        for name in env:
            problem = env_problem(name)
            if problem and not is_secret_name(name):
                raise ValueError(problem)
        return env

    @model_validator(mode="after")
    def _env_names_once(self) -> TrainingJobSpec:
        if both := sorted(set(self.env) & set(self.secret_env)):
            raise ValueError(f"{', '.join(both)} is in both env and secret_env; keep one")
        return self

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not LABEL_KEY.match(key) or len(key) > 253:
                raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
            if not LABEL_VALUE.match(value) or len(value) > 63:
                raise ValueError(f"label value {value!r} is not a valid Kubernetes label value")
            if key.startswith(("app.kubernetes.io/", "trainops.io/")):
                raise ValueError(f"label {key} is reserved for trainops")
        return labels

    @property
    def procs_per_node(self) -> int:
        return processes_per_node(self.gpus_per_node)

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def resolved_kind(self) -> Kind:
        if self.kind != "auto":
            return self.kind
        return "Job" if self.nodes == 1 else "PyTorchJob"


_STAND_IN_DATA = "s3://trainops-spec-check/data"
_STAND_IN_CHECKPOINTS = "s3://trainops-spec-check/checkpoints"


class SearchRange(BaseModel):
    """Values between low and high, sampled uniformly (or log-uniformly)."""

    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"


class SearchChoice(BaseModel):
    """One of these values (every one of them, for a grid search)."""

    model_config = ConfigDict(extra="forbid")
    values: list[float | int] = Field(min_length=1, max_length=100)


MAX_CONCURRENT_TRIALS = 64


class SweepSpec(BaseModel):
    """A Ray Tune sweep over one model and dataset: what to search, how, on what resources."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    dataset: DatasetName
    params: dict[str, SearchRange | SearchChoice] = Field(
        min_length=1,
        description="Search space: lr, batch_size, weight_decay or warmup_fraction, each a "
        "range {low, high, scale: linear|log} or a choice {values: [...]}.",
    )
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=MAX_EPOCHS, description="Per trial, at most.")
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="If untuned.")
    lr: float = Field(DEFAULT_LR, gt=0, le=MAX_LR, description="If untuned.")
    trials: int = Field(8, ge=1, le=MAX_TRIALS, description="Samples (grid: repeats of it).")
    max_concurrent: int = Field(2, ge=1, le=MAX_CONCURRENT_TRIALS, description="Trials at once.")
    scheduler: SchedulerName = Field("asha", description="asha (default), hyperband, median, fifo.")
    search: SearchName = Field("random", description="random, grid (choices only) or optuna.")
    metric: str = Field("val_accuracy", max_length=64)
    mode: Literal["max", "min"] = "max"
    grace_period: int = Field(1, ge=1, le=MAX_EPOCHS, description="Epochs before a stop.")
    reduction_factor: int = Field(2, ge=2, le=10)
    gpus_per_trial: int = Field(0, ge=0, le=8)
    gpu_type: GpuType | None = None
    cpus_per_trial: float = Field(1.0, gt=0, le=MAX_CPUS_PER_REPLICA)
    memory_per_trial: str = Field("2Gi", pattern=MEMORY_QUANTITY, max_length=32)
    budget_usd: float | None = Field(
        None, gt=0, description="The sweep stops when its trials' spend reaches this."
    )
    max_seconds: int | None = Field(
        None, ge=60, le=MAX_DEADLINE_SECONDS, description="Time budget (and deadline), s."
    )
    image: str | None = Field(None, max_length=MAX_REFERENCE_LENGTH)
    name: str | None = Field(None, max_length=MAX_JOB_NAME_LENGTH, pattern=RFC1123_LABEL)
    namespace: str | None = Field(None, pattern=RFC1123_LABEL)
    fallback_dataset: DatasetName | None = None
    smoke_test: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=256)
    backoff_limit: int | None = Field(
        None, ge=0, le=10, description="Driver restarts (each resumes the sweep)."
    )

    _labels = field_validator("labels")(lambda cls, v: TrainingJobSpec._valid_labels(v))
    _image = field_validator("image")(lambda cls, v: TrainingJobSpec._image_reference(v))
    _memory = field_validator("memory_per_trial")(lambda cls, v: TrainingJobSpec._some_memory(v))

    @model_validator(mode="after")
    def _sweep_is_valid(self) -> SweepSpec:
        """The sweep entry point must accept the command this spec renders."""
        if self.gpu_type is not None and not self.gpus_per_trial:
            raise ValueError(f"gpu_type {self.gpu_type} needs gpus_per_trial; or drop gpu_type")
        try:
            parse_sweep(
                self.tune_args(
                    data_dir=_STAND_IN_DATA,
                    checkpoint_dir=_STAND_IN_CHECKPOINTS,
                    usd_per_trial_hour=0.0,
                    sweep_id="check",
                )
            )
        except ConfigError as e:
            raise ValueError(f"the sweep would fail: {e}") from None
        return self

    @property
    def total_trials(self) -> int:
        if self.search != "grid":
            return self.trials
        points = 1
        for param in self.params.values():
            points *= len(param.values) if isinstance(param, SearchChoice) else 1
        return self.trials * points

    @property
    def total_gpus(self) -> int:
        """GPUs held at once: the concurrent trials'."""
        return self.concurrent * self.gpus_per_trial

    @property
    def concurrent(self) -> int:
        return min(self.max_concurrent, self.total_trials)

    def trial_resources(self) -> BilledResources:
        """What one trial holds while it runs (its worker pod's requests): what it is billed."""
        return BilledResources.of(
            1, self.gpus_per_trial, self.cpus_per_trial, self.memory_per_trial, self.gpu_type
        )

    def space_json(self) -> str:
        return json.dumps({k: v.model_dump(exclude_defaults=False) for k, v in self.params.items()})

    def tune_args(
        self, *, data_dir: str, checkpoint_dir: str, usd_per_trial_hour: float, sweep_id: str
    ) -> list[str]:
        """The `training.tune` flags for this spec."""
        args = [
            *("--model", self.model, "--dataset", self.dataset),
            *("--epochs", str(self.epochs), "--batch-size", str(self.batch_size)),
            *("--lr", str(self.lr), "--data-dir", data_dir, "--checkpoint-dir", checkpoint_dir),
            *("--space", self.space_json(), "--trials", str(self.trials)),
            *("--max-concurrent", str(self.max_concurrent), "--scheduler", self.scheduler),
            *("--search", self.search, "--metric", self.metric, "--mode", self.mode),
            *("--grace-period", str(self.grace_period)),
            *("--reduction-factor", str(self.reduction_factor)),
            *("--cpus-per-trial", str(self.cpus_per_trial)),
            *("--gpus-per-trial", str(self.gpus_per_trial)),
            *("--usd-per-trial-hour", f"{usd_per_trial_hour:.8g}", "--sweep-id", sweep_id),
        ]
        if self.budget_usd is not None:
            args += ["--budget-usd", f"{self.budget_usd:g}"]
        if self.max_seconds is not None:
            args += ["--time-budget-s", str(self.max_seconds)]
        if self.fallback_dataset:
            args += ["--fallback-dataset", self.fallback_dataset]
        if self.smoke_test:
            args.append("--smoke-test")
        if self.gpus_per_trial:
            args += ["--device", "cuda"]
        return args


class TrialStatus(BaseModel):
    name: str = Field(description="e.g. trial-3; its log is training_jobs_logs replica=<name>.")
    state: TrialState
    config: dict[str, float | int | str | bool] = {}
    epochs: int = Field(0, description="Epochs reached.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Its latest epoch's.")
    cost_usd: float = 0.0
    wall_s: float = 0.0
    stop_reason: StopReason | None = None
    error: str | None = None
    mlflow_run_id: str | None = None


MAX_TRIALS_SHOWN = 50


class SweepStatus(BaseModel):
    """A sweep's trials as its driver reports them, and the best so far."""

    trials_total: int = Field(description="Trials the sweep runs.")
    counts: dict[TrialState, int] = Field(default_factory=dict)
    trials: list[TrialStatus] = Field(
        default_factory=list,
        description=f"Running trials first, then the best; at most {MAX_TRIALS_SHOWN}.",
    )
    trials_omitted: int = 0
    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    best: TrialStatus | None = None
    cost_usd: float = Field(0.0, description="The trials' spend so far (the driver's count).")
    trial_seconds: float = Field(0.0, description="Wall seconds of every trial, summed.")
    saved_usd: float | None = Field(
        None, description="What early stopping saved (when the sweep has ended)."
    )
    finished: bool = False
    budget_hit: bool = False


class RenderedManifest(BaseModel):
    job_id: str
    kind: Kind
    namespace: str
    yaml: str = Field(description="The manifest that is (or would be) applied.")


class CreateResult(BaseModel):
    job_id: str
    kind: Kind
    namespace: str
    backend: BackendName
    phase: Phase
    created: bool = Field(description="False when the idempotency key matched an existing job.")


class Condition(BaseModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


class ReplicaStatus(BaseModel):
    name: str = Field(description="e.g. master-0, worker-1, node-0")
    type: str
    index: int
    phase: Literal["Pending", "Running", "Succeeded", "Failed"]
    restarts: int = 0
    exit_code: int | None = None
    reason: str | None = Field(None, description="e.g. Error, OOMKilled, Killed, Completed")


class TrainingProgress(BaseModel):
    """The latest progress event the job printed (rank 0); see common.telemetry.ProgressEvent."""

    event: ProgressKind
    epoch: int | None = None
    epochs: int | None = None
    metrics: dict[str, float] = {}
    nonfinite_metrics: dict[str, str] = Field(
        default_factory=dict, description="Metrics that are NaN or infinite: 'nan', 'inf'."
    )
    time: float | None = None


class JobStatus(BaseModel):
    job_id: str
    kind: Kind
    namespace: str
    backend: BackendName
    phase: Phase
    message: str = Field(description="One line a person can act on.")
    conditions: list[Condition] = []
    replicas: list[ReplicaStatus] = []
    restarts: int = 0
    created_at: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    progress: TrainingProgress | None = None
    mlflow_run_id: str | None = None
    model: str | None = None
    dataset: str | None = None
    epochs: int | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    gpu_type: str | None = Field(None, description="The GPU type the spec asked for.")
    gpu_product: str | None = Field(
        None, description="The GPU product of the node its pods ran on (nvidia.com/gpu.product)."
    )
    cpus: float | None = None
    memory: str | None = None
    sweep: SweepStatus | None = Field(None, description="A sweep's (RayJob's) trials.")

    @property
    def condition(self) -> Condition | None:
        """The job's current condition (the one that is True)."""
        return next((c for c in reversed(self.conditions) if c.status == "True"), None)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def unschedulable(self) -> bool:
        """Pending for good: no node can ever hold what it asks for."""
        condition = self.condition
        return (
            self.phase == "Pending"
            and condition is not None
            and (condition.reason == UNSCHEDULABLE)
        )


class JobSummary(BaseModel):
    job_id: str
    kind: Kind
    namespace: str
    phase: Phase
    model: str | None = None
    dataset: str | None = None
    created_at: datetime | None = None
    message: str = ""


class JobList(BaseModel):
    jobs: list[JobSummary]
    total: int = Field(description="Jobs matching the filter before the limit applied.")


class JobEvent(BaseModel):
    time: datetime
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    replica: str | None = None


class JobEvents(BaseModel):
    job_id: str
    events: list[JobEvent]


class LogTail(BaseModel):
    job_id: str
    replica: str
    lines: list[str]
    truncated: bool = Field(description="True when older lines exist beyond this tail.")
    replicas: list[str] = Field(description="Every replica that has a log.")
    previous: bool = Field(
        False,
        description="True when these are the lines of the replica's previous container: the "
        "current one restarted and is waiting or has written nothing yet.",
    )


class PostMortem(BaseModel):
    """What a job leaves in its MLflow run when it ends, so that "why did it fail?" can be
    answered after its pods are gone (artifact POST_MORTEM_ARTIFACT)."""

    job_id: str
    status: JobStatus
    events: list[JobEvent]
    logs: dict[str, list[str]] = Field(description="Replica -> the tail of its log.")
    collected_at: datetime


POST_MORTEM_ARTIFACT = "trainops/post-mortem.json"


class ResourceAmounts(BaseModel):
    cpus: float
    memory_bytes: int
    gpus: int


class NodeCapacity(BaseModel):
    name: str
    allocatable: ResourceAmounts
    free: ResourceAmounts
    gpu_type: str | None = None


class Capacity(BaseModel):
    backend: BackendName
    nodes: list[NodeCapacity]


# -- the tools this server publishes ---------------------------------------------------------

CATALOG = ToolCatalog("kubernetes")
TRAINING_JOBS_CREATE = CATALOG.ref("training_jobs_create", CreateResult)
TRAINING_SWEEPS_CREATE = CATALOG.ref("training_sweeps_create", CreateResult)
MANIFESTS_RENDER = CATALOG.ref("manifests_render", RenderedManifest)
TRAINING_JOBS_GET = CATALOG.ref("training_jobs_get", JobStatus)
TRAINING_JOBS_WAIT = CATALOG.ref("training_jobs_wait", JobStatus)
TRAINING_JOBS_LIST = CATALOG.ref("training_jobs_list", JobList)
TRAINING_JOBS_EVENTS = CATALOG.ref("training_jobs_events", JobEvents)
TRAINING_JOBS_LOGS = CATALOG.ref("training_jobs_logs", LogTail)
TRAINING_JOBS_DELETE = CATALOG.ref("training_jobs_delete", JobStatus)
CLUSTER_CAPACITY = CATALOG.ref("cluster_capacity", Capacity)
TOOLS = tuple(CATALOG.refs)
