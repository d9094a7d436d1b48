"""Cost = requested resources x wall time x the rate card (DESIGN), per GPU type."""

from __future__ import annotations

import pytest

from agent.pricing import BilledResources, cost_breakdown, money
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


@pytest.mark.parametrize(
    ("named", "rate"),
    [
        ("L4", 0.80),
        ("NVIDIA L4", 0.80),
        ("NVIDIA-L40S", 1.85),  # an L40S is not an L4
        ("A10G", 1.00),
        ("NVIDIA A100-SXM4-80GB", 3.00),  # nor an A10G an A100
        ("NVIDIA H100 80GB HBM3", 5.00),
        ("Tesla T4", 0.35),
        ("some new accelerator", 0.25),
        (None, 0.25),
    ],
)
def test_the_default_rate_card_prices_each_gpu_type(named: str | None, rate: float) -> None:
    assert RateCard().gpu_rate(named) == pytest.approx(rate)


def test_an_exact_product_entry_wins_over_its_type() -> None:
    rates = RateCard(gpu_hour_usd={"default": 1.0, "A100": 3.0, "NVIDIA-A100-SXM4-40GB": 2.0})
    assert rates.gpu_rate("NVIDIA-A100-SXM4-40GB") == 2.0
    assert rates.gpu_rate("NVIDIA-A100-SXM4-80GB") == 3.0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0001, "$0.0001"),
        (0.0042, "$0.0042"),
        (0.000042, "$0.000042"),
        (0.5, "$0.50"),
        (12345.678, "$12,345.68"),
        (0, "$0.00"),
        (None, "unknown"),
    ],
)
def test_money_is_never_shown_as_zero_when_it_is_not(value: float | None, shown: str) -> None:
    assert money(value) == shown
