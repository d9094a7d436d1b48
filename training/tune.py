"""Sweep entry point: `python -m training.tune --model cnn --dataset mnist --space '{...}' ...`.

Ray Tune's Tuner over the same Trainer a job runs: a function trainable per trial that resumes
from its own checkpoint and reports once per epoch, ASHA (or another scheduler) deciding which
trials go on. The driver keeps the sweep's state beside its checkpoints, so a restarted driver
resumes the sweep (`Tuner.restore`) without re-running finished trials, under the same MLflow
parent run. Bad input: one line on stderr, exit code 2, nothing started.

On stdout, one progress line per event (`start`, `trial`, `done`; common.telemetry).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from training.config import TrainConfig
from training.errors import CONFIG_ERROR_EXIT, ConfigError
from training.search_space import (
    TUNABLE,
    Choice,
    Param,
    Range,
    SweepConfig,
    apply_trial,
    parse_sweep,
)
from training.sweep_state import SweepState

if TYPE_CHECKING:
    from training.sweep_tracking import SweepTracker

log = logging.getLogger("training.tune")

EXPERIMENT_DIR = "tune"
"""Ray Tune's experiment folder under the sweep's checkpoint dir."""
LOCAL_RAY_TEMP = "/tmp/ray"
"""A short path: Ray's sockets live under it, and a socket path has at most 107 bytes."""


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        base, sweep, sweep_id = parse_sweep(sys.argv[1:] if argv is None else argv)
        _check_data(base)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return run_sweep(base, sweep, sweep_id)


def _check_data(base: TrainConfig) -> None:
    """The dataset loads (or falls back) before any Ray process starts: a sweep on data that
    can't be had fails once, here, not once per trial."""
    from training.data import load_dataset

    load_dataset(base)


RAY_ENV = {
    "RAY_DEDUP_LOGS": "0",  # every trial's own lines, in full
    "RAY_COLOR_PREFIX": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # no network at run time
}
"""Read when ray is imported."""


def run_sweep(base: TrainConfig, sweep: SweepConfig, sweep_id: str) -> int:
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    import ray
    from ray import tune

    from training.sweep_tracking import SweepTracker
    from training.telemetry.progress import ProgressWriter

    assert base.checkpoint_dir is not None
    storage = os.path.abspath(base.checkpoint_dir)
    os.makedirs(storage, exist_ok=True)
    state = SweepState.load(storage)
    progress = ProgressWriter(enabled=True)
    tracker = SweepTracker(base, sweep, sweep_id, state, progress)
    tracker.open_parent()

    _start_ray(sweep)
    experiment = os.path.join(storage, EXPERIMENT_DIR)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, base=base, sweep_id=sweep_id, parent_run_id=state.parent_run_id
        ),
        {"cpu": sweep.cpus_per_trial, "gpu": sweep.gpus_per_trial},
    )
    resumed = tune.Tuner.can_restore(experiment)
    progress.emit(
        "start",
        epochs=base.epochs,
        mlflow_run_id=state.parent_run_id,
        sweep=True,
        trials=sweep.total_trials,
        max_concurrent=sweep.max_concurrent,
        scheduler=sweep.scheduler,
        search=sweep.search,
        metric=sweep.metric,
        mode=sweep.mode,
        resumed=resumed,
    )
    if resumed:
        tuner = tune.Tuner.restore(
            experiment, trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(sweep.space, sweep.search),
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.mode,
                num_samples=sweep.trials,
                max_concurrent_trials=sweep.max_concurrent,
                scheduler=_scheduler(sweep, base.epochs),
                search_alg=_searcher(sweep),
                time_budget_s=sweep.time_budget_s,
                reuse_actors=True,  # a worker runs trial after trial: imports paid once
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT_DIR,
                storage_path=storage,
                callbacks=[tracker],
                stop=tracker.stopper,
                verbose=0,
                # Two: the experiment's saved state may still name the one before the newest
                # when the driver dies, and a restored trial resumes from what it names.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )
    if resumed:
        # A restored Tuner keeps the callbacks it was pickled with; ours carries this process's
        # MLflow client and output stream, so it is put back in.
        _replace_callbacks(tuner, tracker)
    try:
        results = tuner.fit()
    finally:
        ray.shutdown()
    return tracker.finish(results)


def _start_ray(sweep: SweepConfig) -> None:
    import ray

    if os.environ.get("RAY_ADDRESS"):  # a RayJob on a cluster: the RayCluster it runs on
        ray.init(log_to_driver=True, configure_logging=False)
        return
    # This machine: a Ray sized to the trials that may run at once, nothing more.
    cpus = max(1.0, sweep.cpus_per_trial * sweep.max_concurrent)
    ray.init(
        num_cpus=int(-(-cpus // 1)),
        num_gpus=sweep.gpus_per_trial * sweep.max_concurrent,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        log_to_driver=True,
        configure_logging=False,
        _temp_dir=LOCAL_RAY_TEMP,
    )


def _replace_callbacks(tuner: Any, tracker: SweepTracker) -> None:
    internal = getattr(tuner, "_local_tuner", None)
    run_config = getattr(internal, "_run_config", None)
    if run_config is not None:
        run_config.callbacks = [tracker]
        run_config.stop = tracker.stopper


def _param_space(space: dict[str, Param], search: str) -> dict[str, Any]:
    from ray import tune

    def sample(name: str, param: Param) -> Any:
        if isinstance(param, Choice):
            values = list(param.values)
            return tune.grid_search(values) if search == "grid" else tune.choice(values)
        assert isinstance(param, Range)
        whole = TUNABLE[name] == "int"
        if param.scale == "log":
            if whole:
                return tune.lograndint(int(param.low), int(param.high) + 1)
            return tune.loguniform(param.low, param.high)
        if whole:
            return tune.randint(int(param.low), int(param.high) + 1)
        return tune.uniform(param.low, param.high)

    return {name: sample(name, param) for name, param in space.items()}


def _scheduler(sweep: SweepConfig, epochs: int) -> Any:
    from ray.tune.schedulers import (
        AsyncHyperBandScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
    )

    if sweep.scheduler == "asha":
        return AsyncHyperBandScheduler(
            time_attr="training_iteration",
            max_t=epochs,
            grace_period=min(sweep.grace_period, epochs),
            reduction_factor=sweep.reduction_factor,
        )
    if sweep.scheduler == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=epochs, reduction_factor=sweep.reduction_factor
        )
    if sweep.scheduler == "median":
        return MedianStoppingRule(
            time_attr="training_iteration",
            grace_period=sweep.grace_period,
            min_samples_required=2,
        )
    return FIFOScheduler()


def _searcher(sweep: SweepConfig) -> Any:
    if sweep.search != "optuna":
        return None  # random sampling, or the grid, by Tune's own variant generator
    from ray.tune.search.optuna import OptunaSearch

    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a dependency of the image
        raise ConfigError("--search optuna needs optuna installed; pip install optuna") from None
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=sweep.seed))


# -- one trial --------------------------------------------------------------------------------


def run_trial(
    config: dict[str, Any], *, base: TrainConfig, sweep_id: str, parent_run_id: str | None
) -> None:
    """One trial, in a Ray worker: the Trainer on the trial's config, one report per epoch with
    the checkpoint, resumed from Tune's checkpoint when the trial was restored."""
    from ray import tune

    from common.telemetry import TRIAL_STARTS, MlflowTag
    from training.checkpoint import CheckpointManager
    from training.distributed import DistEnv
    from training.sweep_state import trial_name
    from training.telemetry.progress import ProgressWriter
    from training.telemetry.prometheus import NullExporter
    from training.train import prepare
    from training.trainer import Telemetry, Trainer

    trial_id = tune.get_context().get_trial_id()
    name = trial_name(trial_id)
    print(f"{TRIAL_STARTS} {name}", flush=True)
    workdir = tempfile.mkdtemp(prefix=f"{name}-")
    try:
        restored = tune.get_checkpoint()
        if restored is not None:
            with restored.as_directory() as folder:
                shutil.copytree(folder, workdir, dirs_exist_ok=True)
        cfg = apply_trial(
            base,
            config,
            checkpoint_dir=workdir,
            keep_checkpoints=1,
            checkpoint_every=1,
            run_name=f"{sweep_id}-{name}",
        )
        job = prepare(cfg, DistEnv())
        checkpoints = CheckpointManager(workdir, keep=1)
        sink = _trial_sink(job, checkpoints, f"{sweep_id}/{name}")
        trainer = Trainer(
            cfg,
            job.env,
            job.device,
            job.data.dataset,
            telemetry=Telemetry(
                progress=ProgressWriter(enabled=False), exporter=NullExporter(), mlflow=sink
            ),
            checkpoints=checkpoints,
        )
        trainer.restore()
        if sink is not None:
            tags = {
                MlflowTag.JOB_ID: f"{sweep_id}/{name}",
                MlflowTag.SWEEP_ID: sweep_id,
                MlflowTag.TRIAL: name,
                MlflowTag.MODEL: cfg.model,
                MlflowTag.DATASET_USED: job.data.used,
                MlflowTag.DATASET_REQUESTED: job.data.requested,
            }
            if parent_run_id:
                tags[MlflowTag.PARENT_RUN_ID] = parent_run_id
            sink.open(cfg.to_params(), tags)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            if epoch == cfg.epochs:
                return  # the last epoch is reported once the trial has finished, below
            if sink is not None:
                sink.drain()  # a trial the scheduler stops now loses nothing it reported
            tune.report(
                {**metrics, "epoch": epoch, "mlflow_run_id": trainer.mlflow_run_id or ""},
                checkpoint=tune.Checkpoint.from_directory(workdir),
            )

        try:
            result = trainer.train(on_epoch=report)
        except BaseException:
            # Stopped by the scheduler or failed: the driver ends the run and says how.
            if sink is not None:
                sink.drain()
            raise
        finally:
            trainer.close()
        if sink is not None:  # the test metrics and the model are in before the last report
            sink.close("FINISHED", timeout_s=120.0)
        tune.report(
            {
                **result["metrics"],
                "epoch": cfg.epochs,
                "mlflow_run_id": trainer.mlflow_run_id or "",
            },
            checkpoint=tune.Checkpoint.from_directory(workdir),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _trial_sink(job: Any, checkpoints: Any, job_id: str) -> Any:
    if not job.settings.mlflow_tracking_uri:
        return None
    try:
        from training.telemetry.mlflow_sink import MlflowSink
    except ImportError:
        return None
    return MlflowSink(
        job.settings.mlflow_tracking_uri,
        experiment=job.cfg.experiment,
        run_name=job.cfg.run_name,
        job_id=job_id,
        storage=checkpoints.storage,
        uri_file=job.settings.mlflow_uri_file,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
