"""trainops settings, from one place: the environment over `$TRAINOPS_HOME/config.yaml`.

`trainops up` records the local stack's URLs in config.yaml, so servers, agent and local jobs
find MLflow and Prometheus with no environment variables. Built once per process and passed down.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from common.errors import one_line
from common.gpus import (
    DEFAULT_GPU_HOUR_USD,
    DEFAULT_GPU_PRODUCTS,
    GpuType,
    gpu_type_of_product,
)
from common.vocabulary import DEFAULT_EPOCHS, RFC1123_LABEL

DEFAULT_HOME = Path("~/.trainops").expanduser()
CONFIG_FILE = "config.yaml"


class SettingsError(ValueError):
    """config.yaml or the environment holds a bad value; the message says which and how to fix."""


class KubernetesPolicy(BaseModel):
    """What the Kubernetes MCP server allows and how it renders manifests."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a no-op

    allowed_namespaces: list[str] = ["trainops"]
    """Where jobs may go; k8s/base grants the server RBAC in trainops only. Add others here."""
    default_image: str = "ghcr.io/trainops/trainer:0.1.0"
    allowed_image_prefixes: list[str] = ["ghcr.io/trainops/"]
    max_gpus_per_job: int = Field(16, ge=0)
    max_replicas: int = Field(16, ge=1)
    max_concurrent_jobs: int = Field(4, ge=1)
    gpu_node_selector: dict[str, str] = {}
    gpu_products: dict[GpuType, str] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_PRODUCTS),
        description="The nvidia.com/gpu.product label of each GPU type's nodes on your cluster.",
    )
    gpu_tolerations: list[dict[str, str]] = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    checkpoint_claim: str = Field("trainops-checkpoints", pattern=RFC1123_LABEL)
    dataset_claim: str = Field("trainops-datasets", pattern=RFC1123_LABEL)
    service_account: str = Field("trainops-trainer", pattern=RFC1123_LABEL)
    backoff_limit: int = Field(2, ge=0)
    active_deadline_seconds: int = Field(24 * 3600, ge=60)
    ttl_seconds_after_finished: int = Field(7 * 24 * 3600, ge=0)
    metrics_port: int = Field(9400, gt=0, lt=65536)
    job_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment every job gets, e.g. AWS_ENDPOINT_URL for MinIO or a proxy; "
        "what a spec's own env may not set.",
    )

    def gpu_product(self, gpu_type: GpuType) -> str:
        """The node label value that selects a GPU type's nodes."""
        return self.gpu_products.get(gpu_type) or DEFAULT_GPU_PRODUCTS[gpu_type]


class ClusterSettings(BaseModel):
    """How the cluster backend reaches the Kubernetes API, and what its jobs are told."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a no-op

    kubeconfig: Path | None = Field(
        None, description="None: $KUBECONFIG or ~/.kube/config, else the in-cluster config."
    )
    context: str | None = Field(None, description="None: the kubeconfig's current context.")
    request_timeout_s: float = Field(30.0, gt=0, le=300, description="Per API request.")
    job_mlflow_tracking_uri: str = Field(
        "http://mlflow.trainops.svc.cluster.local:5000",
        description="MLflow as the job's pods reach it: the in-cluster service of k8s/base.",
    )


class StackSettings(BaseModel):
    """The local MLflow server and Prometheus that `trainops up` starts."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a no-op

    mlflow_port: int | None = Field(None, gt=0, lt=65536, description="None: a free port.")
    prometheus_port: int | None = Field(None, gt=0, lt=65536)
    scrape_interval: str = Field("5s", pattern=r"^[0-9]+(ms|s|m)$")
    retention: str = Field("7d", pattern=r"^[0-9]+[smhdwy]$")
    retention_size: str = Field("1GB", pattern=r"^[0-9]+(KB|MB|GB|TB)$")
    prometheus_binary: str = Field("prometheus", description="Name on PATH, or a path.")


class RateCard(BaseModel):
    """Prices per hour of what a job requests (DESIGN: requested resources x wall time)."""

    model_config = ConfigDict(extra="forbid")

    gpu_hour_usd: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_HOUR_USD),
        description="Per GPU type (A100, H100, ... or a product name such as 'NVIDIA H100 80GB "
        "HBM3'); 'default' for any other.",
    )
    cpu_hour_usd: float = Field(0.05, ge=0)
    gib_hour_usd: float = Field(0.005, ge=0)

    def gpu_rate(self, gpu_type: str | None) -> float:
        """The rate of a GPU type or product name: an exact entry first, then its type's."""
        if gpu_type:
            for name, rate in self.gpu_hour_usd.items():
                if name != "default" and name.lower() == gpu_type.lower():
                    return rate
            canonical = gpu_type_of_product(gpu_type)
            for name, rate in self.gpu_hour_usd.items():
                if name != "default" and canonical and gpu_type_of_product(name) == canonical:
                    return rate
        return self.gpu_hour_usd.get("default", DEFAULT_GPU_HOUR_USD["default"])


class AgentSettings(BaseModel):
    """How the agent plans, asks and watches."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a no-op

    default_budget_usd: float = Field(10.0, gt=0, description="Approval needed above this.")
    soft_max_gpus: int = Field(8, ge=0, description="Approval needed for more GPUs than this.")
    default_epochs: int = Field(DEFAULT_EPOCHS, ge=1)
    cpus_per_replica: float = Field(1.0, gt=0)
    memory_per_replica: str = "2Gi"
    cpus_per_gpu: float = Field(4.0, gt=0)
    gib_per_gpu: int = Field(16, ge=1)
    poll_seconds: float = Field(15.0, gt=0, le=300)
    assumed_epoch_seconds_cpu: float = Field(600.0, gt=0)
    assumed_epoch_seconds_gpu: float = Field(120.0, gt=0)
    experiment: str = "trainops"
    mcp_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Server name -> streamable HTTP URL; servers not named run over stdio.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRAINOPS_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    home: Path = DEFAULT_HOME
    backend: Literal["local", "cluster"] = "local"
    namespace: str = Field("trainops", pattern=RFC1123_LABEL)
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri")
    )
    prometheus_url: str | None = None
    llm: str | None = None
    rates: RateCard = Field(
        default_factory=RateCard, validation_alias=AliasChoices("TRAINOPS_RATES", "rates")
    )
    agent: AgentSettings = AgentSettings()
    kubernetes: KubernetesPolicy = KubernetesPolicy()
    cluster: ClusterSettings = ClusterSettings()
    stack: StackSettings = StackSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, config_file())

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def secrets_dir(self) -> Path:
        """This machine's Secrets: <name>/<key> files, outside every job's folder."""
        return self.home / "secrets"

    @property
    def volumes_dir(self) -> Path:
        return self.home / "volumes"

    @property
    def prometheus_targets_dir(self) -> Path:
        return self.home / "prometheus" / "targets"


def config_file() -> Path:
    return Path(os.environ.get("TRAINOPS_HOME") or DEFAULT_HOME).expanduser() / CONFIG_FILE


def load_settings(**overrides: Any) -> Settings:
    """Settings, or a SettingsError naming the bad key and where it came from."""
    _check_config_keys(config_file())
    try:
        return Settings(**overrides)
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise SettingsError(
            f"setting {where}: {error['msg']} (got {error.get('input')!r}); fix it in "
            f"{config_file()} or the TRAINOPS_* environment"
        ) from None
    except (OSError, ValueError) as e:  # unreadable or malformed config.yaml, non-JSON env
        if field := re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(e)):
            name = f"TRAINOPS_{field.group(1).upper()}"
            raise SettingsError(
                f"{name} must be JSON, e.g. {name}='{{\"cpu_hour_usd\": 0.05}}'; fix or unset it"
            ) from None
        raise SettingsError(f"{config_file()}: {one_line(e)}; fix or remove the file") from None


def _check_config_keys(path: Path) -> None:
    """config.yaml must be a mapping of known keys: a misspelt key would otherwise be ignored."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: {one_line(e)}; fix or remove the file") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold `key: value` settings; fix or remove the file")
    known = set(Settings.model_fields)
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            known.update(str(choice) for choice in field.validation_alias.choices)
    if unknown := sorted(str(key) for key in data if str(key) not in known):
        raise SettingsError(
            f"{path}: unknown setting {unknown[0]!r}; "
            f"use one of {', '.join(sorted(Settings.model_fields))}"
        )
