"""What a job is billed for: the resources it requests, at the rate card's prices per hour."""

from __future__ import annotations

from dataclasses import dataclass

from common.quantities import parse_bytes
from common.settings import RateCard


@dataclass(frozen=True)
class BilledResources:
    """What a job requests per replica, which is what it is billed for."""

    replicas: int
    gpus: int
    cpus: float
    memory_gib: float
    gpu_type: str | None = None

    @classmethod
    def of(
        cls, nodes: int, gpus_per_node: int, cpus: float, memory: str, gpu_type: str | None = None
    ) -> BilledResources:
        return cls(nodes, gpus_per_node, cpus, parse_bytes(memory) / 2**30, gpu_type)

    def hourly_usd(self, rates: RateCard) -> tuple[float, float, float]:
        """(GPU, CPU, memory) dollars per wall hour for the whole job."""
        return (
            self.replicas * self.gpus * rates.gpu_rate(self.gpu_type),
            self.replicas * self.cpus * rates.cpu_hour_usd,
            self.replicas * self.memory_gib * rates.gib_hour_usd,
        )

    def per_hour(self, rates: RateCard) -> float:
        return sum(self.hourly_usd(rates))
