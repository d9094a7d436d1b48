"""A real Prometheus scrapes each rank's exporter; PromQL sees the training counters."""

from __future__ import annotations

import uuid

from tests.support import (
    TrainingRun,
    clean_env,
    free_port_pair,
    promql,
    register_scrape_target,
    train_args,
    wait_for,
)


def test_prometheus_scrapes_both_ranks_step_counters(stack) -> None:
    job_id = f"cnn-digits-{uuid.uuid4().hex[:4]}"
    base_port = free_port_pair()  # rank r listens on base + r
    run = TrainingRun(
        train_args("cnn", "digits", epochs=200, batch_size=64, log_every=5),
        nproc=2,
        env=clean_env(TRAINOPS_METRICS_PORT=str(base_port), TRAINOPS_JOB_ID=job_id),
    )
    target = register_scrape_target(stack.targets_dir, job_id, [base_port, base_port + 1])
    url = stack.prometheus_url
    try:
        run.wait_for_event("epoch")
        stepping = f'trainops_train_steps_total{{job_id="{job_id}"}} > 0'
        wait_for(
            lambda: len(promql(url, stepping)) == 2,
            timeout=60,
            what="both ranks' step counters in Prometheus",
        )
        assert {r["metric"]["rank"] for r in promql(url, stepping)} == {"0", "1"}
        for name in (
            "trainops_train_samples_total",
            "trainops_train_loss",
            "trainops_learning_rate",
            "trainops_step_seconds_count",
        ):
            assert len(promql(url, f'{name}{{job_id="{job_id}"}}')) == 2, name
        wait_for(
            lambda: promql(url, f'trainops_train_epoch{{job_id="{job_id}"}} >= 1'),
            timeout=30,
            what="the epoch gauge",
        )
        assert promql(url, "process_cpu_seconds_total")
    finally:
        run.kill()
        target.unlink()
