"""Cost = requested resources x wall time x the rate card (DESIGN), per GPU type."""

from __future__ import annotations

import pytest

from agent.pricing import BilledResources, cost_breakdown
from common.settings import RateCard

RATES = RateCard(gpu_hour_usd={"default": 1.0, "H100": 4.0}, cpu_hour_usd=0.1, gib_hour_usd=0.01)


def test_a_two_node_gpu_job_is_priced_by_its_gpu_type_and_utilisation() -> None:
    resources = BilledResources.of(2, 4, cpus=16, memory="64Gi", gpu_type="NVIDIA H100 80GB HBM3")
    breakdown = cost_breakdown(resources, 1800, RATES, gpu_utilization=0.25, epochs=3)
    gpu, cpu, memory = 2 * 4 * 4.0 * 0.5, 2 * 16 * 0.1 * 0.5, 2 * 64 * 0.01 * 0.5
    assert breakdown.cost_gpu_usd == pytest.approx(gpu)
    assert breakdown.cost_usd == pytest.approx(gpu + cpu + memory)
    assert breakdown.gpu_hours == pytest.approx(4.0)
    assert breakdown.idle_gpu_cost_usd == pytest.approx(gpu * 0.75)
    assert breakdown.cost_per_epoch_usd == pytest.approx((gpu + cpu + memory) / 3)


def test_an_unknown_gpu_type_takes_the_default_rate_and_cpu_jobs_have_no_gpu_cost() -> None:
    other = BilledResources.of(1, 1, cpus=4, memory="16Gi", gpu_type="NVIDIA L4")
    assert cost_breakdown(other, 3600, RATES).cost_gpu_usd == pytest.approx(1.0)
    cpu_only = cost_breakdown(BilledResources.of(1, 0, cpus=2, memory="2Gi"), 3600, RATES)
    assert cpu_only.cost_gpu_usd == 0 and cpu_only.idle_gpu_cost_usd is None
    assert cpu_only.cost_usd == pytest.approx(2 * 0.1 + 2 * 0.01)
