"""Telemetry settings, read from the environment once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

from common.telemetry import MLFLOW_URI_FILE_ENV
from training.errors import ConfigError

# What MLflow's tracking and registry stores accept; anything without "://" is a local path.
TRACKING_URI_SCHEMES = frozenset(
    {"http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "uc"}
)


@dataclass(frozen=True)
class TelemetrySettings:
    mlflow_tracking_uri: str | None = None
    job_id: str | None = None
    """trainops.job_id, set by whoever launched the job (the local backend, a manifest)."""
    metrics_port: int | None = None
    """Base port of the Prometheus exporter; each rank listens on metrics_port + LOCAL_RANK."""
    mlflow_uri_file: str | None = None
    """Where to read MLflow's address anew if it stops answering (it may have moved)."""

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        port = env.get("TRAINOPS_METRICS_PORT") or None
        if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
            raise ConfigError(f"TRAINOPS_METRICS_PORT={port!r} is not a port; use e.g. 9400")
        uri = env.get("MLFLOW_TRACKING_URI") or None
        scheme = uri.split("://", 1)[0].split("+", 1)[0] if uri and "://" in uri else None
        if scheme is not None and scheme not in TRACKING_URI_SCHEMES:
            raise ConfigError(
                f"MLFLOW_TRACKING_URI={uri!r} is not a tracking server or store; "
                "use http://HOST:PORT (or file:/path, sqlite:///path), or unset it"
            )
        return cls(
            mlflow_tracking_uri=uri,
            job_id=env.get("TRAINOPS_JOB_ID") or None,
            metrics_port=int(port) if port else None,
            mlflow_uri_file=env.get(MLFLOW_URI_FILE_ENV) or None,
        )
