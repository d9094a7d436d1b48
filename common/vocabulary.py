"""The words trainops speaks, defined once: models, datasets, intents, phases, defaults, limits,
and the rule that a global batch splits evenly over the ranks.

The chat parser, the agent's plan, the Kubernetes server's job spec and the training entry point
all read them from here, so a new model or a changed default is one edit.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

# -- what can be trained -------------------------------------------------------------------------

ModelName = Literal["cnn", "mlp", "resnet18", "gpt"]
DatasetName = Literal["mnist", "fashion-mnist", "cifar10", "digits", "synthetic"]
MODELS: Final[tuple[ModelName, ...]] = get_args(ModelName)
DATASETS: Final[tuple[DatasetName, ...]] = get_args(DatasetName)
TOKEN_MODELS: Final = frozenset({"gpt"})
"""Models that train on token sequences; they need a token dataset."""
TOKEN_DATASETS: Final = frozenset({"synthetic"})
"""Datasets that can serve token sequences (synthetic tokens); the others are images."""


def model_dataset_mismatch(model: str, dataset: str) -> str | None:
    """Why `model` can't train on `dataset` (in words, with the fix), or None when it can."""
    if model in TOKEN_MODELS and dataset not in TOKEN_DATASETS:
        return (
            f"{model} trains on token data and {dataset} is images; "
            f"use the {' or '.join(sorted(TOKEN_DATASETS))} dataset"
        )
    return None


# -- what a message can ask for ------------------------------------------------------------------

Intent = Literal[
    "train",
    "sweep",
    "status",
    "logs",
    "cost",
    "cancel",
    "list",
    "compare",
    "register",
    "diagnose",
    "unknown",
]
INTENTS: Final[tuple[Intent, ...]] = get_args(Intent)
JOB_INTENTS: Final[frozenset[Intent]] = frozenset(
    {"status", "logs", "cost", "cancel", "diagnose", "register"}
)
"""Intents about one job: without a job named, they mean the latest one."""
Scheduler = Literal["asha", "hyperband", "median", "pbt", "fifo"]
SCHEDULERS: Final[tuple[Scheduler, ...]] = get_args(Scheduler)

# -- a sweep's trials ----------------------------------------------------------------------------

TrialState = Literal["pending", "running", "terminated", "stopped", "errored"]
"""terminated: ran every epoch; stopped: ended early (the scheduler, or a budget); errored."""
TRIAL_STATES: Final[tuple[TrialState, ...]] = get_args(TrialState)
StopReason = Literal["scheduler", "budget", "time_budget", "cancelled"]
STOP_REASONS: Final[tuple[StopReason, ...]] = get_args(StopReason)

# -- a job's life --------------------------------------------------------------------------------

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
PHASES: Final[tuple[Phase, ...]] = get_args(Phase)
TERMINAL_PHASES: Final[frozenset[Phase]] = frozenset({"Succeeded", "Failed", "Cancelled"})
UNSCHEDULABLE: Final = "Unschedulable"
"""The reason of a Pending job's condition when no node can ever hold what it asks for (waiting
for others to finish is `InsufficientResources`)."""
INSUFFICIENT_RESOURCES: Final = "InsufficientResources"

# -- defaults and limits -------------------------------------------------------------------------

DEFAULT_EPOCHS: Final = 3
DEFAULT_BATCH_SIZE: Final = 256
"""Global batch size, split evenly over the ranks."""
DEFAULT_LR: Final = 2e-3
MAX_EPOCHS: Final = 10_000
MAX_BATCH_SIZE: Final = 1_000_000
MAX_LR: Final = 10
MAX_NODES: Final = 1024
MAX_GPUS_PER_NODE: Final = 64
MAX_CPUS_PER_REPLICA: Final = 512
MAX_TRIALS: Final = 10_000
MAX_LOG_LINES: Final = 2000
MAX_DEADLINE_SECONDS: Final = 366 * 24 * 3600
"""A job's wall-time limit: a year at most."""
SINGLE_NODE_GPUS: Final = 8
"""GPUs one node holds when a request gives a total and no node count."""

RFC1123_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""Job ids, names and namespaces are RFC 1123 labels."""
MAX_LABEL_LENGTH: Final = 63
MAX_JOB_NAME_LENGTH: Final = 52
"""A job's name leaves room in the 63-character label for the pod suffixes controllers add."""
_LABEL: Final = re.compile(RFC1123_LABEL)


def is_label(value: str, max_length: int = MAX_LABEL_LENGTH) -> bool:
    """Whether `value` can be a job id, name or namespace: an RFC 1123 label this long at most."""
    return len(value) <= max_length and _LABEL.match(value) is not None


# -- the rank rule -------------------------------------------------------------------------------


def processes_per_node(gpus_per_node: int) -> int:
    """One training process per GPU; a CPU replica runs one."""
    return max(gpus_per_node, 1)


def ranks(nodes: int, gpus_per_node: int) -> int:
    """The job's world size: every process of every replica is a rank."""
    return nodes * processes_per_node(gpus_per_node)


def batch_splits(batch_size: int, world_size: int) -> bool:
    """A global batch must split evenly over the ranks (each takes batch_size / world_size)."""
    return batch_size % world_size == 0


def batch_split_problem(name: str, batch_size: int, world_size: int) -> str | None:
    """What is wrong with a batch that does not split over the ranks, with the fix."""
    if batch_splits(batch_size, world_size):
        return None
    return (
        f"{name} {batch_size} does not split over {world_size} ranks; "
        f"use a multiple of {world_size}"
    )


def fitted_batch_size(world_size: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """The multiple of the world size nearest to `batch_size` (at least one sample per rank)."""
    return world_size * max(1, round(batch_size / world_size))
