"""Entry point: `torchrun --nproc-per-node N -m training.train --model cnn --dataset mnist ...`.

Validates everything it can before a process group starts (bad input: one line on stderr, exit
code 2, nothing written), resumes from the latest checkpoint, trains, and prints one JSON line
per epoch and a final `{"event": "done", ...}` line on stdout (rank 0).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from typing import Any

import torch

from training.config import TrainConfig, parse_config
from training.distributed import (
    DistEnv,
    backend_name,
    destroy_process_group,
    init_process_group,
    resolve_device,
)
from training.errors import ConfigError

log = logging.getLogger("training")


def main(argv: list[str] | None = None) -> int:
    env = None
    try:
        env = DistEnv.from_environ()
        _configure_logging(env)
        cfg = parse_config(argv)
        return _run(cfg, env)
    except ConfigError as e:
        if env is None or env.is_main:
            print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def _run(cfg: TrainConfig, env: DistEnv) -> int:
    from training.checkpoint import CheckpointManager
    from training.data import load_dataset
    from training.telemetry.progress import Progress
    from training.telemetry.prometheus import build_exporter
    from training.telemetry.settings import TelemetrySettings
    from training.trainer import Telemetry, Trainer, resolve_precision

    started = time.time()
    settings = TelemetrySettings.from_environ()
    if cfg.batch_size % env.world_size:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not split over {env.world_size} ranks; "
            f"use a multiple of {env.world_size}"
        )
    device = resolve_device(cfg.device, env)
    loaded = load_dataset(cfg)
    train_size = len(loaded.dataset.train)
    if cfg.batch_size > train_size:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the {train_size} training samples of "
            f"{loaded.used}; use --batch-size {train_size} or less"
        )

    progress = Progress(enabled=env.is_main)
    warnings: list[str] = []
    if loaded.fallback_reason is not None:
        notice = (
            f"WARNING: dataset {loaded.requested} is not available, so this job trains on "
            f"{loaded.used} instead (--fallback-dataset). Reason: {loaded.fallback_reason}"
        )
        progress.notice(notice)
        warnings.append(notice)
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cudnn.benchmark = True

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    init_process_group(env, device)
    job_id = settings.job_id or cfg.run_name or f"{cfg.model}-{loaded.used}"
    checkpoints = (
        CheckpointManager(cfg.checkpoint_dir, keep=cfg.keep_checkpoints)
        if cfg.checkpoint_dir
        else None
    )
    sink = None
    trainer = None
    status = "FAILED"
    result: dict[str, Any] = {}
    try:
        if env.is_main and settings.mlflow_tracking_uri:
            sink = _mlflow_sink(cfg, settings, checkpoints)
        exporter = build_exporter(
            settings.metrics_port,
            local_rank=env.local_rank,
            rank=env.rank,
            job_id=job_id,
            device=device,
        )
        telemetry = Telemetry(progress=progress, exporter=exporter, mlflow=sink)
        trainer = Trainer(
            cfg, env, device, loaded.dataset, telemetry=telemetry, checkpoints=checkpoints
        )
        resumed_from = trainer.restore()
        if sink is not None:
            sink.open(cfg.to_params(), _run_tags(cfg, env, device, loaded, job_id, trainer))
        progress.emit(
            "start",
            world_size=env.world_size,
            device=_device_name(device),
            backend=backend_name(env, device),
            precision=resolve_precision(cfg.precision, device),
            dataset_used=loaded.used,
            dataset_requested=loaded.requested,
            train_samples=train_size,
            val_samples=len(loaded.dataset.val),
            steps_per_epoch=trainer.steps_per_epoch,
            data_on_device=trainer.train_data.resident,
            restart_count=env.restart_count,
            mlflow_run_id=trainer.mlflow_run_id,
            job_id=job_id,
        )
        if resumed_from is not None:
            progress.emit(
                "resumed",
                from_epoch=resumed_from,
                step=trainer.step,
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
        destroy_process_group()

    if not result.get("weights_in_sync", True):
        warnings.append(
            "ranks ended with different weights: " + ", ".join(result["weights_fingerprints"])
        )
    progress.emit(
        "done",
        mlflow_run_id=sink.run_id if sink else None,
        dataset_used=loaded.used,
        dataset_requested=loaded.requested,
        fallback=loaded.fallback_reason is not None,
        duration_s=round(time.time() - started, 3),
        checkpoint_dir=cfg.checkpoint_dir,
        warnings=warnings,
        **result,
    )
    return 0


def _mlflow_sink(cfg, settings, checkpoints):
    try:
        from training.telemetry.mlflow_sink import MlflowSink
    except ImportError:
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed; pip install mlflow")
        return None
    return MlflowSink(
        settings.mlflow_tracking_uri,
        experiment=cfg.experiment,
        run_name=cfg.run_name or settings.job_id or f"{cfg.model}-{cfg.dataset}",
        job_id=settings.job_id,
        storage=checkpoints.storage if checkpoints else None,
    )


def _run_tags(cfg, env, device, loaded, job_id, trainer) -> dict[str, str]:
    tags = {
        "trainops.job_id": job_id,
        "trainops.world_size": str(env.world_size),
        "trainops.device": _device_name(device),
        "trainops.backend": backend_name(env, device),
        "trainops.precision": trainer.precision,
        "trainops.restarts": str(env.restart_count),
        "dataset.requested": loaded.requested,
        "dataset.used": loaded.used,
        "model": cfg.model,
    }
    if loaded.fallback_reason is not None:
        tags["dataset.fallback_reason"] = loaded.fallback_reason[:5000]
    return tags


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _configure_logging(env: DistEnv) -> None:
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [rank {env.rank}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
