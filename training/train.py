"""Entry point: `torchrun --nproc-per-node N -m training.train --model cnn --dataset mnist ...`.

Validates everything it can before a process group starts (bad input: one line on stderr, exit
code 2, nothing written), resumes from the latest checkpoint, trains, and prints one JSON line
per epoch and a final `{"event": "done", ...}` line on stdout (rank 0).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from common.telemetry import MlflowTag
from common.vocabulary import batch_split_problem
from training.config import TrainConfig, parse_config
from training.data import LoadedDataset, load_dataset
from training.distributed import (
    DistEnv,
    backend_name,
    destroy_process_group,
    init_process_group,
    resolve_device,
)
from training.errors import CONFIG_ERROR_EXIT, ConfigError
from training.storage import open_storage
from training.telemetry.settings import TelemetrySettings

log = logging.getLogger("training")


@dataclass(frozen=True)
class Job:
    """A validated job: what to train, where, on what data. Building one writes nothing."""

    cfg: TrainConfig
    env: DistEnv
    settings: TelemetrySettings
    device: torch.device
    data: LoadedDataset
    started: float

    @property
    def job_id(self) -> str:
        return self.settings.job_id or self.cfg.run_name or f"{self.cfg.model}-{self.data.used}"

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    @property
    def backend(self) -> str:
        return backend_name(self.env, self.device)


def main(argv: list[str] | None = None) -> int:
    env = None
    try:
        env = DistEnv.from_environ()
        _configure_logging(env)
        job = prepare(parse_config(argv), env)
        return run(job)
    except ConfigError as e:
        if env is None or env.is_main:
            print(f"error: {e}", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT


def prepare(cfg: TrainConfig, env: DistEnv) -> Job:
    """Every check that needs no process group: settings, device, data, batch size."""
    started = time.time()
    settings = TelemetrySettings.from_environ()
    if problem := batch_split_problem("--batch-size", cfg.batch_size, env.world_size):
        raise ConfigError(problem)
    device = resolve_device(cfg.device, env)
    if cfg.checkpoint_dir:
        open_storage(cfg.checkpoint_dir).check_writable("--checkpoint-dir")
    data = load_dataset(cfg)
    train_size = len(data.dataset.train)
    if cfg.batch_size > train_size:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the {train_size} training samples of "
            f"{data.used}; use --batch-size {train_size} or less"
        )
    return Job(cfg=cfg, env=env, settings=settings, device=device, data=data, started=started)


def run(job: Job) -> int:
    from training.checkpoint import CheckpointManager
    from training.telemetry.progress import ProgressWriter
    from training.telemetry.prometheus import build_exporter
    from training.trainer import Telemetry, Trainer

    cfg, env = job.cfg, job.env
    progress = ProgressWriter(enabled=env.is_main)
    warnings: list[str] = []
    if job.data.fallback_reason is not None:
        notice = (
            f"WARNING: dataset {job.data.requested} is not available, so this job trains on "
            f"{job.data.used} instead (--fallback-dataset). Reason: {job.data.fallback_reason}"
        )
        progress.notice(notice)
        warnings.append(notice)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    init_process_group(env, job.device)
    checkpoints = (
        CheckpointManager(cfg.checkpoint_dir, keep=cfg.keep_checkpoints)
        if cfg.checkpoint_dir
        else None
    )
    sink = _mlflow_sink(job, checkpoints) if env.is_main else None
    trainer = None
    status = "FAILED"
    result: dict[str, Any] = {}
    try:
        exporter = build_exporter(
            job.settings.metrics_port,
            local_rank=env.local_rank,
            rank=env.rank,
            job_id=job.job_id,
            device=job.device,
        )
        telemetry = Telemetry(progress=progress, exporter=exporter, mlflow=sink)
        trainer = Trainer(
            cfg, env, job.device, job.data.dataset, telemetry=telemetry, checkpoints=checkpoints
        )
        resumed_from = trainer.restore()
        if sink is not None:
            sink.open(cfg.to_params(), _run_tags(job, trainer.precision))
        progress.emit(
            "start",
            epochs=cfg.epochs,
            mlflow_run_id=trainer.mlflow_run_id,
            **_start_fields(job, trainer),
        )
        if resumed_from is not None and checkpoints is not None:
            progress.emit(
                "resumed",
                epoch=resumed_from,
                epochs=cfg.epochs,
                step=trainer.step,
                from_epoch=resumed_from,
                checkpoint=checkpoints.describe(resumed_from),
            )
        result = trainer.train()
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        if sink is not None:
            warnings += sink.close(status, timeout_s=120.0 if status == "FINISHED" else 5.0)
        if trainer is not None:
            trainer.close()
        destroy_process_group(in_step=status == "FINISHED")

    if not result["weights_in_sync"]:
        warnings.append(
            "ranks ended with different weights: " + ", ".join(result["weights_fingerprints"])
        )
    progress.emit(
        "done",
        epoch=result["epochs"],
        epochs=cfg.epochs,
        step=result["steps"],
        metrics=result["metrics"],
        mlflow_run_id=sink.run_id if sink else None,
        dataset_used=job.data.used,
        dataset_requested=job.data.requested,
        fallback=job.data.fallback_reason is not None,
        duration_s=round(time.time() - job.started, 3),
        checkpoint_dir=cfg.checkpoint_dir,
        warnings=warnings,
        weights_fingerprints=result["weights_fingerprints"],
        weights_in_sync=result["weights_in_sync"],
        cuda_graph=result["cuda_graph"],
    )
    return 0


def _start_fields(job: Job, trainer: Any) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "world_size": job.env.world_size,
        "restart_count": job.env.restart_count,
        "device": job.device_name,
        "backend": job.backend,
        "precision": trainer.precision,
        "dataset_used": job.data.used,
        "dataset_requested": job.data.requested,
        "train_samples": len(job.data.dataset.train),
        "val_samples": len(job.data.dataset.val),
        "steps_per_epoch": trainer.steps_per_epoch,
        "data_on_device": trainer.train_data.resident,
    }


def _mlflow_sink(job: Job, checkpoints: Any) -> Any:
    if not job.settings.mlflow_tracking_uri:
        return None
    try:
        from training.telemetry.mlflow_sink import MlflowSink
    except ImportError:
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed; pip install mlflow")
        return None
    return MlflowSink(
        job.settings.mlflow_tracking_uri,
        experiment=job.cfg.experiment,
        run_name=job.cfg.run_name or job.job_id,
        job_id=job.settings.job_id,
        storage=checkpoints.storage if checkpoints else None,
        uri_file=job.settings.mlflow_uri_file,
    )


def _run_tags(job: Job, precision: str) -> dict[str, str]:
    tags = {
        MlflowTag.JOB_ID: job.job_id,
        MlflowTag.WORLD_SIZE: str(job.env.world_size),
        MlflowTag.DEVICE: job.device_name,
        MlflowTag.BACKEND: job.backend,
        MlflowTag.PRECISION: precision,
        MlflowTag.RESTARTS: str(job.env.restart_count),
        MlflowTag.DATASET_REQUESTED: job.data.requested,
        MlflowTag.DATASET_USED: job.data.used,
        MlflowTag.MODEL: job.cfg.model,
    }
    if job.data.fallback_reason is not None:
        tags[MlflowTag.DATASET_FALLBACK_REASON] = job.data.fallback_reason[:5000]
    return tags


def _configure_logging(env: DistEnv) -> None:
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [rank {env.rank}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _exit(code: int) -> None:
    """Exit; a distributed rank skips interpreter teardown, where gloo's C++ threads can abort
    the process after the job is already done (everything is flushed and closed by then)."""
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
