"""What a job costs: requested resources x wall time x the rate card, as OpenCost prices them.

cost = sum over replicas of wall hours x (GPUs x $/GPU-h + vCPUs x $/vCPU-h + GiB x $/GiB-h).
Beside it: GPU-hours, utilisation-weighted cost, idle-GPU cost = GPU cost x (1 - utilisation),
cost per epoch. The result is the MLflow server's CostBreakdown, the one cost model.
"""

from __future__ import annotations

import math

from common.billing import BilledResources
from common.settings import RateCard
from mcp_servers.mlflow.schemas import CostBreakdown


def cost_breakdown(
    resources: BilledResources,
    wall_seconds: float,
    rates: RateCard,
    *,
    gpu_utilization: float | None = None,
    epochs: int | None = None,
    rate_card: str = "default",
) -> CostBreakdown:
    hours = max(wall_seconds, 0.0) / 3600
    gpu_rate, cpu_rate, memory_rate = resources.hourly_usd(rates)
    gpu_cost, cpu_cost, memory_cost = gpu_rate * hours, cpu_rate * hours, memory_rate * hours
    total = gpu_cost + cpu_cost + memory_cost
    breakdown = CostBreakdown(
        cost_usd=round(total, 8),
        cost_gpu_usd=round(gpu_cost, 8),
        cost_cpu_usd=round(cpu_cost, 8),
        cost_memory_usd=round(memory_cost, 8),
        gpu_hours=round(resources.replicas * resources.gpus * hours, 8),
        cpu_hours=round(resources.replicas * resources.cpus * hours, 8),
        wall_seconds=round(wall_seconds, 3),
        rate_card=rate_card,
    )
    if epochs:
        breakdown.cost_per_epoch_usd = round(total / epochs, 8)
    if resources.gpus and gpu_utilization is not None:
        utilization = min(max(gpu_utilization, 0.0), 1.0)
        breakdown.gpu_utilization = round(utilization, 6)
        breakdown.idle_gpu_cost_usd = round(gpu_cost * (1 - utilization), 8)
        breakdown.utilization_weighted_cost_usd = round(
            gpu_cost * utilization + cpu_cost + memory_cost, 8
        )
    return breakdown


def money(value: float | None) -> str:
    """Dollars to the cent, and small amounts to two significant digits, so that no amount
    above zero reads as $0.00 ($0.0001, $0.0042)."""
    if value is None:
        return "unknown"
    if value == 0 or abs(value) >= 0.01:
        return f"${value:,.2f}"
    decimals = 1 - math.floor(math.log10(abs(value)))
    return "$" + f"{value:.{decimals}f}".rstrip("0")
